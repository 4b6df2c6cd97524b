"""Benchmark programs (`make bench`, `bench-load`, `bench-review`, `bench-prune`, `bench-serve`,
`bench-archive`) and their shared helpers; nothing in the product imports them."""
