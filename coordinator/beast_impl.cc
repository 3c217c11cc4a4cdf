// The one translation unit that compiles Boost.Asio and Boost.Beast (with
// BOOST_ASIO_SEPARATE_COMPILATION and BOOST_BEAST_SEPARATE_COMPILATION set
// on once_coordinator, every other file sees only their declarations).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
