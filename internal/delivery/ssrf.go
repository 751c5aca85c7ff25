package delivery

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"code.dny.dev/ssrf"
)

// ErrForbiddenAddress is wrapped when an HTTP destination resolves to an address
// agent inboxes may not use (DESIGN §5): anything in the IANA IPv4 and IPv6
// Special-Purpose Address Registries (loopback, private, link-local,
// unique-local, CGNAT, documentation, benchmarking, 6to4, Teredo, …), multicast,
// reserved space, every IPv6 address outside global unicast (2000::/3), and cloud
// metadata addresses, which all fall in those ranges.
var ErrForbiddenAddress = errors.New("destination address is not allowed")

// ForbiddenAddressError names the refused address.
type ForbiddenAddressError struct {
	Addr netip.Addr
}

func (e *ForbiddenAddressError) Error() string {
	return fmt.Sprintf("%v: %s", ErrForbiddenAddress, e.Addr)
}

func (e *ForbiddenAddressError) Unwrap() error { return ErrForbiddenAddress }

// guardian holds the address rules. The lists are code.dny.dev/ssrf's, generated
// from the IANA Special-Purpose Address Registries
// (https://www.iana.org/assignments/iana-ipv4-special-registry,
// https://www.iana.org/assignments/iana-ipv6-special-registry) so they follow the
// registries when the module is upgraded rather than a list of our own.
//
// Any port and network is the dialler's business (inboxes listen where they
// like; the HTTP transport dials TCP only); the guard judges addresses alone.
// Forms that embed an IPv4 address are refused whole by the library: 6to4
// (2002::/16) and Teredo (2001::/32, inside 2001::/23). NAT64 (64:ff9b::/96) is
// judged by its embedded IPv4 address below, so an IPv6-only host behind
// DNS64+NAT64 still reaches public inboxes but never 64:ff9b::7f00:1 (127.0.0.1).
var guardian = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())

// forbidden reports whether agent inboxes may not be reached at a. IPv4-mapped
// IPv6 (::ffff:127.0.0.1) is unmapped first, so the IPv4 rules hold for it; a
// NAT64 address (RFC 6052 well-known prefix) is judged by the IPv4 address in its
// last 32 bits.
func forbidden(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return true
	}
	if ssrf.IPv6NAT64Prefix.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	return guardian.SafeAddr(a) != nil
}

// guardControl is a net.Dialer Control func: it runs after DNS resolution, on the
// very address about to be dialled, so a hostname that resolves (or re-resolves,
// DNS rebinding) to a forbidden address is refused, and nothing reaches it.
func guardControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &ForbiddenAddressError{} // not an IP:port: refuse rather than guess
	}
	if forbidden(ap.Addr()) {
		return &ForbiddenAddressError{Addr: ap.Addr()}
	}
	return nil
}
