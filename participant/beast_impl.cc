// The one translation unit of once_participant that compiles Boost.Asio and
// Boost.Beast (BOOST_*_SEPARATE_COMPILATION is set on the library). The
// participant never links the coordinator's copy: it depends on schema/
// only (DESIGN.md §3).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
