"""requirements.*: exact documents, all-or-nothing packages, name clashes, popularity."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import orjson
import pytest

from tests import factories
from tests.conftest import Client

NOW = dt.datetime.now(dt.timezone.utc)


async def new_lead(db) -> uuid.UUID:
    return await factories.lead(db, [("start", NOW, "agent")])


async def row_counts(db) -> tuple[int, int, int]:
    return tuple([await db.fetchval(f"SELECT count(*) FROM {table}")
                  for table in ("requirements", "features", "integrations")])


PACKAGE = {
    "app_type": "mobile_app", "deadline": "2024-08-01",
    "features": [{"name": "Push Notifications", "description": "Notificaciones en tiempo real"},
                 {"name": "Chat en vivo", "description": "Sistema de chat en tiempo real"}],
    "integrations": [{"name": "Firebase", "description": "Backend como servicio"}],
}


async def test_get_requirements_by_lead(admin: Client, db) -> None:
    lead_id = await new_lead(db)
    requirements_id = await factories.requirements(db, lead_id, features=["Sistema de autenticación"],
                                                   integrations=["PayPal", "Stripe"])
    data = await admin.data("requirements", "get_requirements_by_lead", {"lead_id": str(lead_id)})
    assert data["id"] == str(requirements_id)
    assert (data["app_type"], data["deadline"]) == ("web_app", "2024-06-01")
    feature_id = await db.fetchval("SELECT id FROM features WHERE requirements_id = $1", requirements_id)
    assert data["features"] == [{"id": str(feature_id), "name": "Sistema de autenticación",
                                 "description": "about Sistema de autenticación"}]
    assert [i["name"] for i in data["integrations"]] == ["PayPal", "Stripe"]


async def test_get_requirements_by_lead_none_and_unknown(admin: Client, db) -> None:
    lead_id = await new_lead(db)
    reply = await admin.request("requirements", "get_requirements_by_lead", {"lead_id": str(lead_id)})
    assert reply["type"] == "success" and reply["payload"]["data"] is None
    error = await admin.error("requirements", "get_requirements_by_lead", {"lead_id": str(uuid.uuid4())})
    assert error["code"] == "not_found"
    error = await admin.error("requirements", "get_requirements_by_lead", {"lead_id": "nope"})
    assert error["code"] == "invalid_payload" and error["details"] == {"field": "lead_id"}


async def test_create_requirement_package(admin: Client, db) -> None:
    lead_id = await new_lead(db)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await db.add_listener("wsd_changes", lambda *args: heard.put_nowait(args[3]))
    data = await admin.data("requirements", "create_requirement_package",
                            {"lead_qualification_id": str(lead_id), **PACKAGE})
    assert (data["app_type"], data["deadline"], data["lead_id"]) == ("mobile_app", "2024-08-01", str(lead_id))
    assert [(f["name"], f["description"]) for f in data["features"]] == [
        ("Push Notifications", "Notificaciones en tiempo real"),
        ("Chat en vivo", "Sistema de chat en tiempo real")]
    assert [i["name"] for i in data["integrations"]] == ["Firebase"]
    assert await row_counts(db) == (1, 2, 1)
    assert orjson.loads(await asyncio.wait_for(heard.get(), 5)) == {"topic": "requirements"}
    assert await admin.data("requirements", "get_requirements_by_lead", {"lead_id": str(lead_id)}) == data


async def test_a_second_package_is_a_conflict(admin: Client, db) -> None:
    lead_id = await new_lead(db)
    await admin.data("requirements", "create_requirement_package", {"lead_qualification_id": str(lead_id), **PACKAGE})
    error = await admin.error("requirements", "create_requirement_package",
                              {"lead_qualification_id": str(lead_id), "app_type": "web_app"})
    assert error["code"] == "conflict"
    assert await row_counts(db) == (1, 2, 1)


@pytest.mark.parametrize("change, code, field", [
    ({"features": [{"name": "Login"}, {"name": "Chat"}, {"name": "x" * 201}]}, "invalid_payload", "features[2].name"),
    ({"features": [{"name": "Login"}, {"name": "Chat"}, {"name": "   "}]}, "invalid_payload", "features[2].name"),
    ({"features": [{"name": "Login"}, {"name": "Chat"}, {"description": "no name"}]}, "invalid_payload", "features[2].name"),
    ({"features": [{"name": "Push  notifications "}, {"name": "push Notifications"}]}, "invalid_payload", "features[1].name"),
        ({"features": [{"name": "Chat en vivo"}, {"name": "Chat\u00a0en vivo"}]}, "invalid_payload", "features[1].name"),
        ({"features": [{"name": "   " + "x" * 200 + "  "}, {"name": "y" * 201}]}, "invalid_payload", "features[1].name"),
        ({"app_type": "   "}, "invalid_payload", "app_type"),
    ({"integrations": [{"name": "Stripe", "description": "d" * 2001}]}, "invalid_payload", "integrations[0].description"),
    ({"deadline": "2024-13-01"}, "invalid_payload", "deadline"),
    ({"deadline": "01/08/2024"}, "invalid_payload", "deadline"),
    ({"app_type": ""}, "invalid_payload", "app_type"),
    ({"app_type": "a" * 51}, "invalid_payload", "app_type"),
    ({"budget": 10}, "invalid_payload", "budget"),
])
async def test_a_bad_package_writes_nothing(admin: Client, db, change, code, field) -> None:
    lead_id = await new_lead(db)
    error = await admin.error("requirements", "create_requirement_package",
                              {"lead_qualification_id": str(lead_id), **PACKAGE, **change})
    assert error["code"] == code and error["details"]["field"] == field
    assert await row_counts(db) == (0, 0, 0)


async def test_a_failure_after_the_first_rows_rolls_everything_back(admin: Client, db) -> None:
    # A NUL passes the payload types but not PostgreSQL: the integrations insert fails after
    # the requirements and features rows were written in the same transaction.
    lead_id = await new_lead(db)
    error = await admin.error("requirements", "create_requirement_package", {
        "lead_qualification_id": str(lead_id), **PACKAGE, "integrations": [{"name": "Bad\u0000Name"}]})
    assert error["code"] == "invalid_payload"
    assert await row_counts(db) == (0, 0, 0)


async def test_package_for_an_unknown_lead_and_by_a_viewer(admin: Client, viewer: Client, db) -> None:
    error = await admin.error("requirements", "create_requirement_package",
                              {"lead_qualification_id": str(uuid.uuid4()), **PACKAGE})
    assert error["code"] == "not_found"
    lead_id = await new_lead(db)
    error = await viewer.error("requirements", "create_requirement_package",
                               {"lead_qualification_id": str(lead_id), **PACKAGE})
    assert error["code"] == "forbidden"
    assert await row_counts(db) == (0, 0, 0)


async def test_update_requirements_is_partial(admin: Client, db) -> None:
    lead_id = await new_lead(db)
    requirements_id = str(await factories.requirements(db, lead_id, features=["Login"]))
    data = await admin.data("requirements", "update_requirements",
                            {"requirements_id": requirements_id, "app_type": "ecommerce"})
    assert (data["app_type"], data["deadline"], len(data["features"])) == ("ecommerce", "2024-06-01", 1)
    data = await admin.data("requirements", "update_requirements",
                            {"requirements_id": requirements_id, "deadline": "2024-07-01"})
    assert (data["app_type"], data["deadline"]) == ("ecommerce", "2024-07-01")
    data = await admin.data("requirements", "update_requirements",
                            {"requirements_id": requirements_id, "deadline": None})
    assert (data["app_type"], data["deadline"]) == ("ecommerce", None)


async def test_update_requirements_errors(admin: Client, viewer: Client, db) -> None:
    lead_id = await new_lead(db)
    requirements_id = str(await factories.requirements(db, lead_id))
    cases = [({"requirements_id": requirements_id}, "invalid_payload"),
             ({"requirements_id": requirements_id, "app_type": None}, "invalid_payload"),
             ({"requirements_id": requirements_id, "deadline": "tomorrow"}, "invalid_payload"),
             ({"requirements_id": str(uuid.uuid4()), "app_type": "web_app"}, "not_found")]
    for payload, code in cases:
        assert (await admin.error("requirements", "update_requirements", payload))["code"] == code, payload
    assert (await viewer.error("requirements", "update_requirements",
                               {"requirements_id": requirements_id, "app_type": "x"}))["code"] == "forbidden"
    assert await db.fetchval("SELECT app_type FROM requirements") == "web_app"


@pytest.mark.parametrize("action, table", [("add_feature", "features"), ("add_integration", "integrations")])
async def test_add_item(admin: Client, db, action, table) -> None:
    lead_id = await new_lead(db)
    requirements_id = await factories.requirements(db, lead_id)
    item = await admin.data("requirements", action, {"requirements_id": str(requirements_id),
                                                     "name": "  Chat en vivo ", "description": "Tiempo real"})
    stored = await db.fetchrow(f"SELECT id, name, description FROM {table}")
    assert item == {"id": str(stored["id"]), "name": "Chat en vivo", "description": "Tiempo real"}
    assert tuple(stored)[1:] == ("Chat en vivo", "Tiempo real")
    error = await admin.error("requirements", action, {"requirements_id": str(requirements_id),
                                                       "name": "CHAT   en VIVO", "description": ""})
    assert error["code"] == "conflict" and error["details"]["field"] == "name"
    error = await admin.error("requirements", action, {"requirements_id": str(uuid.uuid4()),
                                                       "name": "Mapas", "description": ""})
    assert error["code"] == "not_found"
    error = await admin.error("requirements", action, {"requirements_id": str(requirements_id),
                                                       "name": "", "description": ""})
    assert error["code"] == "invalid_payload" and error["details"]["field"] == "name"
    assert await db.fetchval(f"SELECT count(*) FROM {table}") == 1


async def test_popular_features_and_integrations(admin: Client, db) -> None:
    features = [["Login", "Chat en vivo"], ["login", "Pagos", "Chat en vivo"], ["Login ", "chat  en vivo"], ["Mapas"]]
    for names in features:
        await factories.requirements(db, await new_lead(db), features=names,
                                     integrations=["Stripe"] if "Pagos" in names else [])
    popular = await admin.data("requirements", "get_popular_features")
    assert [(p["name"], p["count"], p["share"]) for p in popular] == [
        ("Chat en vivo", 3, 0.75), ("Login", 3, 0.75), ("Mapas", 1, 0.25), ("Pagos", 1, 0.25)]
    top = await admin.data("requirements", "get_popular_features", {"limit": 1})
    assert [p["name"] for p in top] == ["Chat en vivo"]
    assert await admin.data("requirements", "get_popular_integrations") == [
        {"name": "Stripe", "count": 1, "share": 0.25}]
    for limit in (0, 101, "5"):
        error = await admin.error("requirements", "get_popular_integrations", {"limit": limit})
        assert error["code"] == "invalid_payload" and error["details"]["field"] == "limit"


async def test_popular_on_an_empty_database(admin: Client, db) -> None:
    assert await admin.data("requirements", "get_popular_features") == []
