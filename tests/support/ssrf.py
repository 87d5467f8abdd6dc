"""Callback targets Batchline must refuse (SSRF): one per non-public range, in every spelling a
URL can give an address. Shared by the target check, delivery and batch-creation tests."""

from __future__ import annotations

#: Addresses (as they go between the brackets or after `http://`) that no callback may reach.
NON_PUBLIC_ADDRESSES = (
    # IPv4: this network, private, carrier-grade NAT, loopback, link-local and metadata
    "0.0.0.0", "0.1.2.3", "10.0.0.8", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "100.64.0.1", "100.127.255.254", "127.0.0.1", "127.1.2.3", "169.254.1.1", "169.254.169.254",
    # IETF protocol assignments (192.0.0.0/24, PCP and TURN anycast included), documentation,
    # AS112, AMT, the 6to4 relay, benchmarking
    "192.0.0.1", "192.0.0.9", "192.0.0.10", "192.0.0.170", "192.0.2.1", "198.51.100.1", "203.0.113.1",
    "192.31.196.1", "192.52.193.1", "192.175.48.1", "192.88.99.1", "198.18.0.1", "198.19.255.255",
    # multicast, reserved, broadcast
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.254", "255.255.255.255",
    # IPv6: unspecified, loopback, IPv4-mapped and -compatible, NAT64, 6to4 and Teredo embedding a
    # non-public IPv4, local-use NAT64, discard
    "[::]", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]", "[::ffff:100.64.0.1]", "[::ffff:192.0.0.9]",
    "[::127.0.0.1]", "[64:ff9b::7f00:1]", "[64:ff9b::6440:1]", "[64:ff9b:1::808:808]", "[2002:7f00:1::1]",
    "[2002:6440:1::1]", "[2001:0:4136:e378:8000:63bf:80ff:fffe]", "[100::1]",
    # IETF protocol assignments, documentation, AS112, SRv6
    "[2001:2::1]", "[2001:20::1]", "[2001:4:112::1]", "[2001:db8::1]", "[3fff::1]", "[2620:4f:8000::1]",
    "[5f00::1]",
    # unique-local, link-local, site-local, multicast
    "[fd00::1]", "[fc00::1]", "[fe80::1]", "[febf::1]", "[fec0::1]", "[ff02::1]", "[ff0e::1]",
)
#: The same hosts as the resolver's getaddrinfo reads them: decimal, hex, octal and short IPv4.
OTHER_SPELLINGS = ("2130706433", "0x7f000001", "0177.0.0.1", "127.1", "10.1", "localhost")
