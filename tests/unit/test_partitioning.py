"""The gateway's partitioner must place keys exactly where Kafka's default partitioner does, so
other producers (faust, kafka-python, the Java client) agree on a person's partition."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as reference
from hypothesis import given
from hypothesis import strategies as st

from connectors.gateway.partitioning import murmur2, partition_for


@given(st.binary(max_size=200))
def test_murmur2_matches_the_reference_implementation(data: bytes) -> None:
    assert murmur2(data) == reference(data)


def test_known_java_client_values() -> None:
    # values from Kafka's own Utils.murmur2 test (as signed 32-bit ints)
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536, b"": 275646681}
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFFFFFF


def test_partition_is_stable_and_in_range() -> None:
    for n in (1, 3, 6, 24):
        parts = {partition_for(f"pk_{i}".encode(), n) for i in range(500)}
        assert parts <= set(range(n)) and (n == 1 or len(parts) == n)
    assert partition_for(b"pk_abc", 6) == partition_for(b"pk_abc", 6)
