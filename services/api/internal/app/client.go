package app

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// parseTrustedProxies parses TRUSTED_PROXIES: CIDRs, or bare addresses
// taken as one host (/32, /128).
func parseTrustedProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("TRUSTED_PROXIES: %q is neither a CIDR (10.0.0.0/8, fd00::/8) nor an address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func trusted(proxies []netip.Prefix, a netip.Addr) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop parses one address: bare, or with a port ("1.2.3.4:5",
// "[2001:db8::1]:5", as some proxies write X-Forwarded-For).
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// clientAddr is the address a request comes from: the connection's peer,
// unless that peer is a trusted proxy; then the rightmost X-Forwarded-For
// hop that is not itself a trusted proxy (the leftmost when all are). A
// malformed hop ends the walk at the trusted hop after it, so a client
// cannot pass itself off as anyone by writing garbage in the header it
// sends. ok is false when the peer address is not an IP address at all.
func clientAddr(r *http.Request, proxies []netip.Prefix) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, ok := parseHop(host)
	if !ok {
		return netip.Addr{}, false
	}
	if len(proxies) == 0 || !trusted(proxies, peer) {
		return peer, true
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = a
		if !trusted(proxies, a) {
			break
		}
	}
	return client, true
}

// clientKey is what per-client limits count under: an IPv4 address as it
// is, an IPv6 address by its /64 prefix, since one subscriber usually
// holds a whole /64 and can pick any address in it.
func clientKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// clientOf is the per-client key of r (clientAddr, then clientKey); a peer
// that is not an IP address (a Unix socket) is keyed as it is.
func (a *API) clientOf(r *http.Request) string {
	addr, ok := clientAddr(r, a.cfg.trusted)
	if !ok {
		return "peer:" + r.RemoteAddr
	}
	return clientKey(addr)
}
