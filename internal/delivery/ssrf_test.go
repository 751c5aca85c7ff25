package delivery

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestForbidden covers every range of the IANA Special-Purpose Address
// Registries (one address inside each, and where it matters one just outside),
// the non-global IPv6 space, and the forms that embed an IPv4 address.
func TestForbidden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		addr string
		want bool
	}{
		// IPv4 special-purpose registry.
		{"this network", "0.0.0.0", true},
		{"this network, top", "0.255.255.255", true},
		{"private 10/8", "10.1.2.3", true},
		{"shared address space (CGNAT)", "100.64.0.1", true},
		{"CGNAT top", "100.127.255.255", true},
		{"just above CGNAT", "100.128.0.1", false},
		{"loopback", "127.0.0.1", true},
		{"loopback, other", "127.255.0.9", true},
		{"link-local", "169.254.0.1", true},
		{"cloud metadata (AWS, GCP, Azure)", "169.254.169.254", true},
		{"just below link-local", "169.253.255.255", false},
		{"private 172.16/12", "172.16.0.1", true},
		{"private 172.16/12 top", "172.31.255.255", true},
		{"just above 172.16/12", "172.32.0.1", false},
		{"IETF protocol assignments", "192.0.0.8", true},
		{"Oracle metadata", "192.0.0.192", true},
		{"documentation TEST-NET-1", "192.0.2.10", true},
		{"AS112-v4", "192.31.196.1", true},
		{"AMT", "192.52.193.1", true},
		{"6to4 relay anycast", "192.88.99.1", true},
		{"private 192.168/16", "192.168.1.1", true},
		{"just above 192.168/16", "192.169.0.1", false},
		{"AS112 direct delegation", "192.175.48.1", true},
		{"benchmarking", "198.18.0.1", true},
		{"benchmarking top", "198.19.255.255", true},
		{"documentation TEST-NET-2", "198.51.100.7", true},
		{"documentation TEST-NET-3", "203.0.113.7", true},
		{"multicast", "224.0.0.1", true},
		{"multicast, other", "239.1.1.1", true},
		{"reserved", "240.0.0.1", true},
		{"limited broadcast", "255.255.255.255", true},
		{"public IPv4", "8.8.8.8", false},
		{"public IPv4, other", "1.1.1.1", false},

		// IPv6: outside global unicast 2000::/3.
		{"unspecified", "::", true},
		{"loopback v6", "::1", true},
		{"IPv4-compatible (deprecated)", "::7f00:1", true},
		{"discard-only", "100::1", true},
		{"unique-local", "fc00::1", true},
		{"AWS metadata v6", "fd00:ec2::254", true},
		{"link-local v6", "fe80::1", true},
		{"site-local (deprecated)", "fec0::1", true},
		{"multicast v6", "ff02::1", true},
		{"NAT64 local-use", "64:ff9b:1::a00:1", true},
		// IPv6 special-purpose registry, inside global unicast.
		{"IETF protocol assignments v6", "2001:2::1", true},
		{"ORCHIDv2", "2001:20::1", true},
		{"documentation v6", "2001:db8::1", true},
		{"documentation v6 (RFC 9637)", "3fff::1", true},
		{"AS112 v6", "2620:4f:8000::1", true},
		{"public IPv6", "2606:4700:4700::1111", false},
		{"public IPv6, other", "2a00:1450:4001:80e::200e", false},

		// Forms that embed an IPv4 address.
		{"IPv4-mapped loopback", "::ffff:127.0.0.1", true},
		{"IPv4-mapped private", "::ffff:10.0.0.1", true},
		{"IPv4-mapped metadata", "::ffff:169.254.169.254", true},
		{"IPv4-mapped public", "::ffff:8.8.8.8", false},
		{"NAT64 of loopback", "64:ff9b::7f00:1", true},
		{"NAT64 of metadata", "64:ff9b::a9fe:a9fe", true},
		{"NAT64 of private", "64:ff9b::c0a8:101", true},
		{"NAT64 of public", "64:ff9b::808:808", false},
		{"6to4 of loopback", "2002:7f00:1::1", true},
		{"6to4 of metadata", "2002:a9fe:a9fe::1", true},
		{"6to4 of public (refused whole)", "2002:808:808::1", true},
		{"Teredo of loopback", "2001:0:4136:e378:8000:63bf:80ff:fffe", true},
		{"Teredo of public (refused whole)", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, forbidden(netip.MustParseAddr(tt.addr)), tt.addr)
		})
	}
	require.True(t, forbidden(netip.Addr{}), "the zero Addr is refused")
}

// TestGuardControl checks the dial-time hook on the address:port strings
// net.Dialer hands it, on both families and any port.
func TestGuardControl(t *testing.T) {
	t.Parallel()
	require.ErrorIs(t, guardControl("tcp", "not-an-address", nil), ErrForbiddenAddress)
	require.NoError(t, guardControl("tcp4", "93.184.215.14:443", nil))
	require.NoError(t, guardControl("tcp4", "93.184.215.14:8080", nil), "any port")
	require.NoError(t, guardControl("tcp6", "[2606:4700:4700::1111]:9000", nil))
	require.ErrorIs(t, guardControl("tcp6", "[fd00:ec2::254]:80", nil), ErrForbiddenAddress)
	require.ErrorIs(t, guardControl("tcp6", "[2002:7f00:1::1]:80", nil), ErrForbiddenAddress)
	require.ErrorIs(t, guardControl("tcp4", "192.88.99.1:443", nil), ErrForbiddenAddress)

	var fe *ForbiddenAddressError
	require.ErrorAs(t, guardControl("tcp4", "127.0.0.1:80", nil), &fe)
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), fe.Addr)
}
