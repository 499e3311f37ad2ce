"""Reading a Prometheus scrape in tests: every sample by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

BEARER = "test-metrics-token"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, its labels): value} for every line of an exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample `name` with exactly these labels, or None when the scrape has none."""
    return samples(text).get((name, frozenset(labels.items())))


def total(text: str, name: str, **labels: str) -> float:
    """The sum of every `name` sample whose labels include these (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples(text).items() if n == name and wanted <= have)


def scrape(client) -> str:
    """GET /metrics with the test token (the `settings` fixture must have set it)."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {BEARER}")
    assert response.status_code == 200, response.content[:300]
    return response.content.decode()
