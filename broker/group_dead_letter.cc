#include "broker/group_dead_letter.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {
namespace {

absl::StatusOr<std::shared_ptr<Topic>> GetOrCreateTopic(Broker* broker, const Topic& source,
                                                        absl::string_view name) {
  absl::StatusOr<std::shared_ptr<Topic>> topic = broker->GetTopic(name);
  if (topic.ok() || !absl::IsNotFound(topic.status())) return topic;
  TopicConfig config = source.config();
  config.max_message_bytes =
      std::min(config.max_message_bytes + kDeadLetterOverheadBytes, kMaxMessageBytesLimit);
  absl::StatusOr<CreateOutcome> created = broker->CreateTopic(name, config);
  // kFailedPrecondition: someone created it meanwhile with other settings;
  // it exists, so use it.
  if (!created.ok() && !absl::IsFailedPrecondition(created.status())) {
    return absl::Status(created.status().code(), absl::StrCat("creating dead-letter topic \"", name,
                                                              "\": ", created.status().message()));
  }
  if (created.ok() && *created == CreateOutcome::kCreated) {
    spdlog::info("created dead-letter topic \"{}\" for topic \"{}\"", std::string(name),
                 source.name());
  }
  return broker->GetTopic(name);
}

}  // namespace

Record MakeDeadLetterRecord(const Record& original, absl::string_view topic,
                            absl::string_view group, const DeadLetter& letter) {
  Record r;
  r.flags = original.flags;
  r.key = original.key;
  r.value = original.value;
  r.headers = original.headers;
  r.headers.push_back({kHeaderOriginTopic, std::string(topic)});
  r.headers.push_back({kHeaderOriginPartition, absl::StrCat(letter.partition)});
  r.headers.push_back({kHeaderOriginOffset, absl::StrCat(letter.offset)});
  r.headers.push_back({kHeaderOriginGroup, std::string(group)});
  r.headers.push_back({kHeaderReason, letter.reason});
  r.headers.push_back({kHeaderDeliveryCount, absl::StrCat(letter.deliveries)});
  r.idempotency_key =
      absl::StrCat("dlq:", group, ":", topic, ":", letter.partition, ":", letter.offset);
  return r;
}

absl::Status PublishDeadLetters(Broker* broker, const Topic& source, absl::string_view group,
                                absl::string_view dlq_topic, absl::Span<const DeadLetter> letters) {
  if (letters.empty()) return absl::OkStatus();
  std::vector<Record> records;
  records.reserve(letters.size());
  for (const DeadLetter& letter : letters) {
    absl::StatusOr<std::vector<Record>> read =
        source.Read(letter.partition, letter.offset, ReadLimits{1, 1});
    if (absl::IsOutOfRange(read.status())) {
      spdlog::warn("dead-lettering {}/{}/{} for group \"{}\": the message is gone ({})",
                   source.name(), letter.partition, letter.offset, std::string(group),
                   std::string(read.status().message()));
      continue;
    }
    if (!read.ok()) {
      return absl::Status(
          read.status().code(),
          absl::StrCat("reading ", source.name(), "/", letter.partition, "/", letter.offset,
                       " to dead-letter it: ", read.status().message()));
    }
    if (read->empty() || read->front().offset != letter.offset) {
      return absl::InternalError(absl::StrCat("reading ", source.name(), "/", letter.partition, "/",
                                              letter.offset,
                                              " to dead-letter it returned no such record"));
    }
    records.push_back(MakeDeadLetterRecord(read->front(), source.name(), group, letter));
  }
  if (records.empty()) return absl::OkStatus();
  ONCE_ASSIGN_OR_RETURN(std::shared_ptr<Topic> dlq, GetOrCreateTopic(broker, source, dlq_topic));
  absl::StatusOr<std::vector<PublishResult>> published = dlq->Publish(std::move(records));
  if (!published.ok()) {
    return absl::Status(published.status().code(),
                        absl::StrCat("publishing to dead-letter topic \"", dlq_topic,
                                     "\": ", published.status().message()));
  }
  return absl::OkStatus();
}

}  // namespace once::broker
