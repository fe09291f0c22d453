"""Pytest plugin loaded with ``-p`` before any other: makes ``import httpx`` resolve to httpx2.

respx patches ``httpx``; the provider SDKs and this package send through ``httpx2``. Aliasing
before respx (or anything else) imports httpx makes respx's routes intercept httpx2 traffic.
"""

import httpx2

httpx2.alias_httpx()
