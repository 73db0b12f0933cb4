from tests.integration.ledger.helpers import balance, run


def test_topup_then_spend_moves_money(engine, tenant):
    topup = run(engine, tenant.id, "topup", user_id="alice", amount=1000, payment_method="card")
    assert topup["status"] == "applied"
    assert topup["balance_after"] == 1000
    spend = run(engine, tenant.id, "spend", user_id="alice", amount=300, item_id="sku-1")
    assert spend["status"] == "applied"
    assert balance(engine, tenant.id, "alice") == 700
    too_much = run(engine, tenant.id, "spend", user_id="alice", amount=701)
    assert too_much["status"] == "rejected"
    assert too_much["result"]["code"] == "insufficient_funds"
