#include "broker/group_registry.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/group_ordered.h"
#include "broker/group_shared.h"
#include "schema/status_macros.h"
#include "spdlog/spdlog.h"

namespace once::broker {
namespace {

absl::Status GroupNotFound(absl::string_view topic, absl::string_view name) {
  return absl::NotFoundError(
      absl::StrCat("group \"", name, "\" of topic \"", topic, "\" not found"));
}

// Names the first setting that differs, for the "exists with other
// settings" error.
std::string FirstDifference(const GroupConfig& a, const GroupConfig& b) {
  if (a.mode != b.mode) return "mode";
  if (a.guarantee != b.guarantee) return "guarantee";
  if (a.ack_timeout_ms != b.ack_timeout_ms) return "ack_timeout_ms";
  if (a.max_deliveries != b.max_deliveries) return "max_deliveries";
  if (a.dead_letter_topic != b.dead_letter_topic) return "dead_letter_topic";
  if (a.prefetch != b.prefetch) return "prefetch";
  if (!(a.start == b.start)) return "start";
  if (a.session_timeout_ms != b.session_timeout_ms) return "session_timeout_ms";
  if (a.backoff_base_ms != b.backoff_base_ms) return "backoff_base_ms";
  if (a.backoff_max_ms != b.backoff_max_ms) return "backoff_max_ms";
  if (a.txn_batch_max != b.txn_batch_max) return "txn_batch_max";
  return "txn_linger_ms";
}

}  // namespace

GroupRegistry::~GroupRegistry() {
  // Returns once no call is in flight.
  broker_->SetWrittenListener({});
}

absl::StatusOr<std::unique_ptr<GroupRegistry>> GroupRegistry::Open(Broker* broker,
                                                                   GroupRegistryOptions options) {
  std::string path = options.db_path;
  if (path.empty()) {
    path = (std::filesystem::path(broker->options().data_dir) / "groups.db").string();
  }
  sqlite::DatabaseOptions db_options;
  db_options.synchronous = options.synchronous;
  GroupStoreOptions store_options;
  store_options.min_commit_interval = options.min_commit_interval;
  ONCE_ASSIGN_OR_RETURN(std::unique_ptr<GroupStore> store,
                        GroupStore::Open(path, db_options, store_options));
  ONCE_ASSIGN_OR_RETURN(DeliveryTokenCodec codec,
                        DeliveryTokenCodec::Create(store->token_secret()));
  Clock* clock = options.clock != nullptr ? options.clock : broker->options().clock;
  std::unique_ptr<GroupRegistry> registry(
      new GroupRegistry(broker, clock, std::move(store), std::move(codec)));

  // Exactly-once groups see a record once written: the coordinator PREPAREs
  // it while its fdatasync runs (and decides once it is durable). Not under
  // mu_, which NotifyWritten takes.
  GroupRegistry* r = registry.get();
  broker->SetWrittenListener([r](absl::string_view topic) { r->NotifyWritten(topic); });

  ONCE_ASSIGN_OR_RETURN(std::vector<StoredGroup> stored, registry->store_->LoadGroups());
  absl::MutexLock lock(&registry->mu_);
  for (const StoredGroup& g : stored) {
    absl::StatusOr<std::shared_ptr<Topic>> topic = broker->GetTopic(g.topic);
    if (absl::IsNotFound(topic.status())) {
      spdlog::warn("group \"{}\": its topic \"{}\" no longer exists; deleting the group", g.name,
                   g.topic);
      ONCE_RETURN_IF_ERROR(registry->store_->DeleteGroup(g.group_id));
      continue;
    }
    ONCE_RETURN_IF_ERROR(topic.status());
    std::vector<StoredPartition> partitions;
    if ((*topic)->config().backend == Backend::kDisk) {
      ONCE_ASSIGN_OR_RETURN(partitions, registry->store_->LoadPartitions(g.group_id));
    }
    ONCE_ASSIGN_OR_RETURN(std::shared_ptr<ConsumerGroup> group,
                          registry->MakeGroup(g, *std::move(topic), partitions));
    registry->groups_[{g.topic, g.name}] = std::move(group);
  }
  spdlog::info("group registry {}: {} group(s), boot epoch {}", path, registry->groups_.size(),
               registry->store_->boot_epoch());
  return registry;
}

absl::StatusOr<std::shared_ptr<ConsumerGroup>> GroupRegistry::MakeGroup(
    const StoredGroup& stored, std::shared_ptr<Topic> topic,
    const std::vector<StoredPartition>& partitions) {
  const bool disk = topic->config().backend == Backend::kDisk;
  // Partitions without stored state (memory topics; disk partitions
  // missing a row) start at the group's start position, resolved now.
  std::vector<int64_t> floors;
  for (int p = 0; p < topic->partition_count(); ++p) {
    Log* log = topic->partition(p);
    if (log == nullptr) {
      return absl::InternalError(
          absl::StrCat("topic \"", topic->name(), "\" has no partition ", p));
    }
    absl::StatusOr<int64_t> floor = [&]() -> absl::StatusOr<int64_t> {
      const int64_t first = log->FirstOffset(), next = log->NextOffset();
      switch (stored.config.start.kind) {
        case PositionKind::kEarliest:
          return first;
        case PositionKind::kLatest:
          return next;
        case PositionKind::kOffset:
          return std::clamp(stored.config.start.value, first, next);
        case PositionKind::kTime: {
          ONCE_ASSIGN_OR_RETURN(int64_t at, log->OffsetForTime(stored.config.start.value));
          return std::clamp(at, first, next);
        }
      }
      return first;
    }();
    ONCE_RETURN_IF_ERROR(floor.status());
    floors.push_back(*floor);
  }
  GroupContext ctx;
  ctx.name = stored.name;
  ctx.topic = std::move(topic);
  ctx.config = stored.config;
  ctx.incarnation = static_cast<uint64_t>(stored.group_id);
  ctx.boot_epoch = store_->boot_epoch();
  ctx.created_ms = stored.created_ms;
  ctx.codec = &codec_;
  ctx.store = disk ? store_.get() : nullptr;
  ctx.broker = broker_;
  ctx.clock = clock_;
  if (stored.config.mode == GroupMode::kOrdered) {
    ONCE_ASSIGN_OR_RETURN(std::unique_ptr<OrderedGroup> g,
                          OrderedGroup::Create(std::move(ctx), partitions, floors));
    return std::shared_ptr<ConsumerGroup>(std::move(g));
  }
  ONCE_ASSIGN_OR_RETURN(std::unique_ptr<SharedGroup> g,
                        SharedGroup::Create(std::move(ctx), partitions, floors));
  return std::shared_ptr<ConsumerGroup>(std::move(g));
}

absl::StatusOr<CreateOutcome> GroupRegistry::CreateGroup(absl::string_view topic_name,
                                                         absl::string_view name,
                                                         const GroupConfig& config) {
  ONCE_RETURN_IF_ERROR(ValidateGroupName(name));
  ONCE_RETURN_IF_ERROR(ValidateGroupConfig(config, topic_name));
  absl::StatusOr<std::shared_ptr<Topic>> topic = broker_->GetTopic(topic_name);
  if (absl::IsNotFound(topic.status())) {
    return absl::NotFoundError(absl::StrCat("topic \"", topic_name, "\" not found"));
  }
  ONCE_RETURN_IF_ERROR(topic.status());

  absl::MutexLock lock(&mu_);
  ONCE_RETURN_IF_ERROR(DropStaleLocked(topic_name));
  auto it = groups_.find(Key(topic_name, name));
  if (it != groups_.end()) {
    const GroupConfig& existing = it->second->config();
    if (existing == config) return CreateOutcome::kAlreadyExists;
    return absl::FailedPreconditionError(absl::StrCat(
        "group \"", name, "\" of topic \"", topic_name, "\" already exists with other settings (",
        FirstDifference(existing, config), " differs)"));
  }
  StoredGroup stored;
  stored.topic = std::string(topic_name);
  stored.name = std::string(name);
  stored.config = config;
  stored.created_ms = clock_->NowMs();
  // Resolve the start position once and store it as the partitions'
  // initial floors, so that a restart does not move a "latest" group.
  std::vector<int64_t> floors;
  const bool disk = (*topic)->config().backend == Backend::kDisk;
  ONCE_ASSIGN_OR_RETURN(std::shared_ptr<ConsumerGroup> probe, MakeGroup(stored, *topic, {}));
  if (disk) floors = probe->DoneFloors();
  ONCE_ASSIGN_OR_RETURN(stored.group_id, store_->CreateGroup(stored, floors));
  std::vector<StoredPartition> partitions;
  for (size_t p = 0; p < floors.size(); ++p) {
    StoredPartition sp;
    sp.partition = static_cast<int>(p);
    sp.done_floor = sp.dispatched = floors[p];
    partitions.push_back(sp);
  }
  absl::StatusOr<std::shared_ptr<ConsumerGroup>> group =
      MakeGroup(stored, *std::move(topic), partitions);
  if (!group.ok()) {
    (void)store_->DeleteGroup(stored.group_id);
    return group.status();
  }
  groups_[Key(topic_name, name)] = *std::move(group);
  spdlog::info("created {} group \"{}\" on topic \"{}\" (incarnation {})",
               std::string(GroupModeName(config.mode)), std::string(name), std::string(topic_name),
               stored.group_id);
  return CreateOutcome::kCreated;
}

absl::Status GroupRegistry::DeleteGroup(absl::string_view topic, absl::string_view name) {
  std::shared_ptr<ConsumerGroup> group;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(Key(topic, name));
    if (it == groups_.end()) return GroupNotFound(topic, name);
    group = it->second;
    groups_.erase(it);
  }
  // Outside the registry lock: Close waits for the group's in-flight calls.
  group->Close();
  absl::Status s = store_->DeleteGroup(static_cast<int64_t>(group->incarnation()));
  if (!s.ok()) {
    spdlog::error("deleting group \"{}\" of topic \"{}\" from the store: {}", std::string(name),
                  std::string(topic), s.ToString());
    return s;
  }
  spdlog::info("deleted group \"{}\" of topic \"{}\"", std::string(name), std::string(topic));
  return absl::OkStatus();
}

absl::Status GroupRegistry::DropStaleLocked(absl::string_view topic) {
  auto first = groups_.lower_bound(Key(topic, ""));
  if (first == groups_.end() || first->first.first != topic) return absl::OkStatus();
  absl::StatusOr<std::shared_ptr<Topic>> current = broker_->GetTopic(topic);
  if (current.ok() && *current == first->second->topic()) return absl::OkStatus();
  if (!current.ok() && !absl::IsNotFound(current.status())) return current.status();
  std::vector<std::shared_ptr<ConsumerGroup>> dropped;
  for (auto it = first; it != groups_.end() && it->first.first == topic;) {
    dropped.push_back(it->second);
    it = groups_.erase(it);
  }
  for (const std::shared_ptr<ConsumerGroup>& g : dropped) {
    g->Close();
    ONCE_RETURN_IF_ERROR(store_->DeleteGroup(static_cast<int64_t>(g->incarnation())));
    spdlog::info("deleted group \"{}\": its topic \"{}\" was deleted", g->name(),
                 std::string(topic));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ConsumerGroup>> GroupRegistry::GetGroup(absl::string_view topic,
                                                                       absl::string_view name) {
  absl::MutexLock lock(&mu_);
  ONCE_RETURN_IF_ERROR(DropStaleLocked(topic));
  auto it = groups_.find(Key(topic, name));
  if (it == groups_.end()) {
    if (absl::IsNotFound(broker_->GetTopic(topic).status())) {
      return absl::NotFoundError(absl::StrCat("topic \"", topic, "\" not found"));
    }
    return GroupNotFound(topic, name);
  }
  return it->second;
}

absl::StatusOr<GroupDescription> GroupRegistry::DescribeGroup(absl::string_view topic,
                                                              absl::string_view name) {
  ONCE_ASSIGN_OR_RETURN(std::shared_ptr<ConsumerGroup> group, GetGroup(topic, name));
  return group->Describe();
}

std::vector<std::string> GroupRegistry::ListGroups(absl::string_view topic) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (auto it = groups_.lower_bound(Key(topic, ""));
       it != groups_.end() && it->first.first == topic; ++it) {
    names.push_back(it->first.second);
  }
  return names;
}

absl::Status GroupRegistry::DeleteTopicGroups(absl::string_view topic) {
  for (const std::string& name : ListGroups(topic)) {
    absl::Status s = DeleteGroup(topic, name);
    if (!s.ok() && !absl::IsNotFound(s)) return s;
  }
  return absl::OkStatus();
}

namespace {

bool ExactlyOnce(const ConsumerGroup& g) { return g.config().guarantee == Guarantee::kExactlyOnce; }

// Whether the topic's appends call Broker's written listener (a disk log's
// group commit under fsync=always).
bool NotifiesWritten(const Topic& topic) {
  return topic.config().backend == Backend::kDisk && topic.config().fsync == FsyncPolicy::kAlways;
}

}  // namespace

void GroupRegistry::NotifyPublished(absl::string_view topic) {
  NotifyGroups(topic, [](const ConsumerGroup& g) {
    return !(ExactlyOnce(g) && NotifiesWritten(*g.topic()));
  });
}

void GroupRegistry::NotifyWritten(absl::string_view topic) { NotifyGroups(topic, &ExactlyOnce); }

void GroupRegistry::NotifyGroups(absl::string_view topic,
                                 absl::FunctionRef<bool(const ConsumerGroup&)> wanted) {
  std::vector<std::shared_ptr<ConsumerGroup>> groups;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = groups_.lower_bound(Key(topic, ""));
         it != groups_.end() && it->first.first == topic; ++it) {
      if (wanted(*it->second)) groups.push_back(it->second);
    }
  }
  // Outside mu_: a listener may call back into the registry.
  for (const auto& g : groups) g->notifier().Notify();
}

absl::Status GroupRegistry::Tick() {
  std::vector<std::shared_ptr<ConsumerGroup>> groups;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, g] : groups_) groups.push_back(g);
  }
  absl::Status first;
  for (const auto& g : groups) {
    absl::Status s = g->Tick();
    if (!s.ok() && !absl::IsNotFound(s) && first.ok()) first = s;
  }
  return first;
}

absl::StatusOr<std::vector<TrimmedPartition>> GroupRegistry::ReclaimSpace() {
  // topic -> its groups, in one consistent snapshot of the map.
  absl::btree_map<std::string, std::vector<std::shared_ptr<ConsumerGroup>>> by_topic;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, g] : groups_) by_topic[key.first].push_back(g);
  }
  std::vector<TrimmedPartition> trimmed;
  for (const auto& [topic_name, groups] : by_topic) {
    const std::shared_ptr<Topic>& topic = groups.front()->topic();
    std::vector<int64_t> floor(topic->partition_count(), std::numeric_limits<int64_t>::max());
    for (const auto& g : groups) {
      std::vector<int64_t> done = g->DoneFloors();
      for (size_t p = 0; p < floor.size() && p < done.size(); ++p) {
        floor[p] = std::min(floor[p], done[p]);
      }
    }
    for (int p = 0; p < static_cast<int>(floor.size()); ++p) {
      Log* log = topic->partition(p);
      if (log == nullptr || floor[p] <= log->FirstOffset()) continue;
      const int64_t before = std::min(floor[p], log->NextOffset());
      absl::Status s = log->TrimBefore(before);
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("trimming ", topic_name, "/", p, " before ",
                                                   before, ": ", s.message()));
      }
      trimmed.push_back({topic_name, p, before});
    }
  }
  return trimmed;
}

}  // namespace once::broker
