"""A network lab for tests and benchmarks: the real server behind an impaired link to real viewers.

`lab` builds the namespaces, links and impairments; `content` makes realistic publisher pictures;
`viewer` reads a Chromium viewer through `getStats()`; `scenario` puts server, publisher and viewers
together. Root only (network namespaces, tc, nftables). See docs/netlab.md.
"""
