import uuid


def test_topup_submitted_over_http_is_applied_by_a_worker(stack, tenant):
    client = stack.client(tenant.api_key)
    response = client.post(
        "/wallets/topup",
        {"user_id": "alice", "asset_code": "EUR", "amount": 500, "reference_id": uuid.uuid4().hex},
    )
    assert response.status_code == 202, response.text
    final = client.wait_final(response.json()["id"])
    assert final["status"] == "applied"
    balance = client.get("/wallets/alice/balance", params={"asset_code": "EUR"}).json()
    assert balance["balance"] == 500
