package broker

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxy headers that name the client a proxy received a request from.
const (
	HeaderForwardedFor = "X-Forwarded-For" // a list, each proxy appends its peer
	HeaderRealIP       = "X-Real-IP"       // one address, set by the proxy
	HeaderForwarded    = "Forwarded"       // RFC 7239: for= of each element
)

// ClientAddress finds the address of the client behind a request. Without
// trusted proxies it is the TCP peer. When the peer is a trusted proxy, the
// proxy header is read from its right end, where the nearest proxy wrote,
// and the first address not in a trusted range is the client: everything to
// its left was written by the client itself, or by proxies nobody vouches
// for. A peer that is not trusted has its headers ignored, so a client
// cannot choose its own address.
type ClientAddress struct {
	trusted []netip.Prefix
	header  string
}

// NewClientAddress trusts the proxies in the given CIDR ranges (a bare
// address is one host) and reads header, one of HeaderForwardedFor (the
// default when ""), HeaderRealIP and HeaderForwarded.
func NewClientAddress(trusted []string, header string) (*ClientAddress, error) {
	c := &ClientAddress{header: http.CanonicalHeaderKey(header)}
	switch c.header {
	case "":
		c.header = HeaderForwardedFor
	case HeaderForwardedFor, http.CanonicalHeaderKey(HeaderRealIP), HeaderForwarded:
	default:
		return nil, fmt.Errorf("header %q: want %s, %s or %s", header, HeaderForwardedFor, HeaderRealIP, HeaderForwarded)
	}
	for _, s := range trusted {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q: not an address or CIDR range", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("%q trusts every address: any client could then choose its own", s)
		}
		c.trusted = append(c.trusted, p.Masked())
	}
	return c, nil
}

// Of returns the client address of r.
func (c *ClientAddress) Of(r *http.Request) string {
	peer, ok := peerAddr(r.RemoteAddr)
	if !ok {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		return host
	}
	if c == nil || !c.isTrusted(peer) {
		return peer.String()
	}
	hops := proxyHops(r.Header.Values(c.header), c.header == HeaderForwarded)
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break // a hop no address can be read from: the last proxy's peer is all we know
		}
		client = a
		if !c.isTrusted(a) {
			break
		}
	}
	return client.String()
}

func (c *ClientAddress) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerAddr(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// proxyHops lists the hops of every header line, left to right; for
// Forwarded, the for= value of each element.
func proxyHops(lines []string, forwarded bool) []string {
	var hops []string
	for _, line := range lines {
		for _, el := range strings.Split(line, ",") {
			if !forwarded {
				hops = append(hops, el)
				continue
			}
			hop := "" // an element without for= names no client
			for _, pair := range strings.Split(el, ";") {
				if k, v, ok := strings.Cut(strings.TrimSpace(pair), "="); ok && strings.EqualFold(k, "for") {
					hop = v
				}
			}
			hops = append(hops, hop)
		}
	}
	return hops
}

// parseHop reads one hop: an address, maybe with a port, maybe quoted,
// IPv6 maybe in brackets. "unknown" and obfuscated names are not addresses.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
