import httpx2


def test_prism_refuses_an_invalid_body_and_accepts_a_valid_one(prism_url: str) -> None:
    headers = {"Authorization": "Bearer test_key"}
    bad = httpx2.post(f"{prism_url}/events/ingest", json={"events": []}, headers=headers)
    assert bad.status_code == 422
    good = httpx2.post(
        f"{prism_url}/events/ingest",
        json={
            "events": [
                {"event_id": "e1", "customer_id": "c1", "event_name": "n", "metadata": {"a": 1}}
            ]
        },
        headers=headers,
    )
    assert good.status_code == 200, good.headers.get("sl-violations")
