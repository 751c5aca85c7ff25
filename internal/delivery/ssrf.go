package delivery

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// ErrForbiddenAddress is wrapped when an HTTP destination resolves to an address
// agent inboxes may not use (DESIGN §5): loopback, private, link-local,
// unique-local, CGNAT, multicast, unspecified, cloud metadata.
var ErrForbiddenAddress = errors.New("destination address is not allowed")

// ForbiddenAddressError names the refused address.
type ForbiddenAddressError struct {
	Addr netip.Addr
}

func (e *ForbiddenAddressError) Error() string {
	return fmt.Sprintf("%v: %s", ErrForbiddenAddress, e.Addr)
}

func (e *ForbiddenAddressError) Unwrap() error { return ErrForbiddenAddress }

var forbiddenPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"; 0.0.0.0 reaches localhost on Linux
	netip.MustParsePrefix("10.0.0.0/8"),     // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),  // CGNAT, RFC 6598
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, incl. 169.254.169.254 metadata
	netip.MustParsePrefix("172.16.0.0/12"),  // RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments (incl. 192.0.0.192 Oracle metadata)
	netip.MustParsePrefix("192.168.0.0/16"), // RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking, RFC 2544
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, incl. broadcast
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("64:ff9b::/96"),   // NAT64: embeds an IPv4 address (checked below)
	netip.MustParsePrefix("fc00::/7"),       // unique-local, incl. fd00:ec2::254 metadata
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
	netip.MustParsePrefix("ff00::/8"),       // multicast
}

// forbidden reports whether agent inboxes may not be reached at a. IPv4-mapped
// IPv6 (::ffff:127.0.0.1) is unmapped first, so the IPv4 rules hold for it.
func forbidden(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return true
	}
	if a.Is6() && netip.MustParsePrefix("64:ff9b::/96").Contains(a) {
		// NAT64 well-known prefix: the last 32 bits are an IPv4 address; judge that.
		b := a.As16()
		return forbidden(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
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
