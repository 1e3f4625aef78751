"""ota-dmclient: network, trust, downloads and the package cache."""
