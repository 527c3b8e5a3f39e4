"""Geo: country out of the box, region and city from a MaxMind-format database when one is configured.

Enrichment keys: ``country`` (ISO 3166-1 alpha-2, from ``iptocc``, whose data ships inside the package:
nothing is downloaded, ever), and with ``TRACKGATE_GEOIP_DB`` set to a GeoIP2/GeoLite2 City (or any
MaxMind-format) file: ``region`` (the first subdivision's English name), ``region_code`` (its ISO code),
``city`` (English name); the database's country is used when ``iptocc`` has none. Private, loopback and
other non-global addresses get no geo.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import iptocc
import maxminddb

from trackgate.schemas.event import Event
from trackgate.workers.enrich.client_ip import IPAddress, public_ip


@lru_cache(maxsize=65536)
def country_code(ip: str | None) -> str | None:
    """The country of an IP string (None for a private or unparsable one), cached by string."""
    address = public_ip(ip)
    return iptocc.country_code(str(address)) if address is not None else None


class GeoDatabase:
    """A MaxMind-format database, memory-mapped, opened once per worker process."""

    def __init__(self, path: str):
        self.path = path
        self.reader = maxminddb.open_database(path, maxminddb.MODE_MMAP)

    def lookup(self, address: IPAddress) -> dict[str, str]:
        record: Any = self.reader.get(str(address))  # the database's own JSON-like records
        if not isinstance(record, dict):
            return {}
        out: dict[str, str] = {}
        country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
        if country:
            out["country"] = country
        subdivisions = record.get("subdivisions") or []
        if subdivisions:
            first = subdivisions[0]
            name = (first.get("names") or {}).get("en")
            if name:
                out["region"] = name
            if first.get("iso_code"):
                out["region_code"] = first["iso_code"]
        city = ((record.get("city") or {}).get("names") or {}).get("en")
        if city:
            out["city"] = city
        return out

    def close(self) -> None:
        database_fields.cache_clear()  # its entries name this database
        self.reader.close()


@lru_cache(maxsize=65536)
def database_fields(database: Any, ip: str) -> tuple[tuple[str, str], ...]:
    """What ``database`` (a :class:`GeoDatabase`) says of a public IP string, as (key, value) pairs,
    cached by string: real traffic repeats addresses, and a lookup decodes the record each time."""
    address = public_ip(ip)
    return tuple(database.lookup(address).items()) if address is not None else ()


def process(event: Event, env) -> None:
    ip = event.context.ip
    if not ip:
        return
    out = event.enrichment
    country = country_code(ip)
    if country:
        out.setdefault("country", country)
    if env.geo is not None:
        for key, value in database_fields(env.geo, ip):
            out.setdefault(key, value)
