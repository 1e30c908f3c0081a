#!/usr/bin/env python3
"""Conformance suite: Microsoft's Python Dataverse client against the Dataverse simulator.

The client (``powerplatform-dataverse-client``, pinned in requirements.txt) talks to the
simulator through a TLS front on 127.0.0.1 (tls_front.py; the client refuses plain http) with
tokens from the simulator's token endpoint, obtained by azure-identity's own
``ClientSecretCredential``: its authority is the front, and MSAL reads the simulator's OpenID
configuration before it asks for a token. Each check uses the client's API where it has one
and its request helper (``_ODataClient._request``: the client's headers, token and error
handling) for what it has no API for, and names the Microsoft Learn page it follows.

Run by ``tests/tests/it/dataverse_conformance.rs`` (``make conformance``); by hand against a
running ``make sandbox``::

    .venv/bin/python tests/conformance/dataverse_client.py --sim http://127.0.0.1:8801

Exit status 0 when every check passes; 1 with the failing checks' reasons otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import urllib.request
import uuid
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tls_front import TlsFront  # noqa: E402

# The sandbox's defaults (tests/src/dataverse/README.md): its tenant and the "admin" app user.
SANDBOX_TENANT = "7e57e57e-0000-4000-8000-000000000000"
SANDBOX_ADMIN_CLIENT = "c0c0c0c0-0000-4000-8000-000000000002"
SANDBOX_ADMIN_SECRET = "sandbox-admin-secret"

MISSING = "00000000-0000-4000-8000-0000000000ff"

CHECKS = []


def check(doc: str):
    """Registers a check; ``doc`` is the Microsoft Learn page it follows."""

    def register(fn):
        CHECKS.append((fn.__name__, doc, fn))
        return fn

    return register


class Suite:
    """What every check needs: the client, the simulator's plain URL, the error type."""

    def __init__(self, client, sim_url: str, errors) -> None:
        self.client = client
        self.sim_url = sim_url.rstrip("/")
        self.HttpError = errors.HttpError

    def odata(self):
        """The client's OData layer, for requests it has no API for."""
        return self.client._scoped_odata()

    def control(self, method: str, path: str, body=None) -> None:
        """A `/_sim` control request to the simulator (plain http, no token)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.sim_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def tagged(self, tag: str, **order):
        return self.client.records.list(
            "contact",
            filter=f"lastname eq '{tag}'",
            select=["firstname", "lastname"],
            orderby=order.get("orderby", ["firstname asc"]),
        )

    def contacts(self, tag: str, firstnames) -> list[str]:
        return [
            self.client.records.create("contact", {"firstname": f, "lastname": tag})
            for f in firstnames
        ]

    def raises(self, fn, status: int):
        """Runs ``fn``; returns the client's HttpError, which must have ``status``."""
        try:
            fn()
        except self.HttpError as e:
            assert e.status_code == status, f"expected HTTP {status}, got {e.status_code}: {e}"
            return e
        raise AssertionError(f"expected HTTP {status}, the call succeeded")


def tag() -> str:
    return f"Conf{uuid.uuid4().hex[:10]}"


# --- the checks ---------------------------------------------------------------------------


@check("https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api")
def table_definitions_name_the_entity_set_and_primary_key_the_client_writes_with(s: Suite):
    info = s.client.tables.get("contact")
    assert info is not None, "the contact table was not found"
    assert info.entity_set_name == "contacts", info
    assert info.primary_id_attribute == "contactid", info
    assert info.primary_name_attribute == "fullname", info
    assert s.client.tables.get("nosuchtable") is None, "an unknown table is not found"


@check(
    "https://learn.microsoft.com/power-apps/developer/data-platform/webapi/create-entity-web-api#associate-table-rows-on-create"
)
def a_contact_created_with_a_bind_points_at_its_account(s: Suite):
    account = s.client.records.create("account", {"name": "Contoso"})
    contact = s.client.records.create(
        "contact",
        {"lastname": "Lovelace", "parentcustomerid_account@odata.bind": f"/accounts({account})"},
    )
    row = s.client.records.retrieve(
        "contact", contact, select=["lastname", "_parentcustomerid_value"]
    )
    assert row is not None, "the created contact is readable"
    assert row["lastname"] == "Lovelace", row.data
    assert row["_parentcustomerid_value"] == account, row.data


@check("https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api")
def a_choice_written_as_its_label_is_stored_as_its_value(s: Suite):
    # Before a write with text values the client reads the table's choice columns with their
    # option sets (EntityDefinitions(...)/Attributes/...PicklistAttributeMetadata?$expand=OptionSet)
    # and sends a label's value instead.
    contact = s.client.records.create("contact", {"lastname": tag(), "gendercode": "Female"})
    row = s.client.records.retrieve("contact", contact, select=["gendercode"])
    assert row["gendercode"] == 2, row.data


@check("https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview")
def select_filter_orderby_and_top_choose_and_order_the_rows(s: Suite):
    t = tag()
    s.contacts(t, ["A", "B", "C", "D", "E"])
    s.contacts(tag(), ["Z"])
    result = s.client.records.list(
        "contact",
        select=["firstname", "lastname"],
        filter=f"lastname eq '{t}'",
        orderby=["firstname desc"],
        top=3,
    )
    assert [r["firstname"] for r in result] == ["E", "D", "C"], [r.data for r in result]
    for r in result:
        extra = set(r.data) - {"firstname", "lastname", "contactid"}
        assert not extra, f"$select returned more columns: {sorted(extra)}"


@check("https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results")
def odata_maxpagesize_pages_follow_the_next_link_to_the_last_row(s: Suite):
    t = tag()
    ids = s.contacts(t, ["A", "B", "C", "D", "E"])
    pages = list(
        s.client.records.list_pages(
            "contact", filter=f"lastname eq '{t}'", select=["firstname"], page_size=2
        )
    )
    assert [len(p) for p in pages] == [2, 2, 1], [len(p) for p in pages]
    seen = [r["contactid"] for p in pages for r in p]
    assert sorted(seen) == sorted(ids), "every row once, across the pages"


@check("https://learn.microsoft.com/power-apps/developer/data-platform/fetchxml/page-results")
def fetchxml_pages_with_paging_cookies_until_there_are_no_more_records(s: Suite):
    t = tag()
    s.contacts(t, ["A", "B", "C", "D", "E"])
    xml = f"""<fetch count="2">
      <entity name="contact">
        <attribute name="firstname" />
        <attribute name="lastname" />
        <order attribute="firstname" />
        <filter><condition attribute="lastname" operator="eq" value="{t}" /></filter>
      </entity>
    </fetch>"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pages = list(s.client.query.fetchxml(xml).execute_pages())
    assert [[r["firstname"] for r in p] for p in pages] == [["A", "B"], ["C", "D"], ["E"]], [
        [r.data for r in p] for p in pages
    ]
    fallback = [str(w.message) for w in caught if "paging cookie" in str(w.message)]
    assert not fallback, f"the client fell back to simple paging: {fallback}"


@check(
    "https://learn.microsoft.com/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api"
)
def if_match_keeps_an_update_from_creating_a_row_or_overwriting_a_newer_version(s: Suite):
    # records.update sends If-Match: * (an update, never an upsert).
    s.raises(lambda: s.client.records.update("contact", MISSING, {"firstname": "X"}), 404)
    assert s.client.records.retrieve("contact", MISSING) is None, "no row was created"
    [contact] = s.contacts(tag(), ["Old"])
    etag = s.client.records.retrieve("contact", contact, select=["firstname"]).etag
    s.client.records.update("contact", contact, {"firstname": "Newer"})
    with s.odata() as od:
        url = f"{od.api}/contacts({contact})"
        stale = s.raises(
            lambda: od._request("patch", url, json={"firstname": "Lost"}, headers={"If-Match": etag}),
            412,
        )
        assert stale.details.get("service_error_code") == "0x80060882", stale.details
        current = s.client.records.retrieve("contact", contact, select=["firstname"])
        od._request("patch", url, json={"firstname": "Kept"}, headers={"If-Match": current.etag})
    assert s.client.records.retrieve("contact", contact)["firstname"] == "Kept"


@check(
    "https://learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api#change-sets"
)
def a_change_set_binds_and_updates_the_rows_it_creates_and_a_batched_query_keeps_its_filter(s: Suite):
    t = tag()
    batch = s.client.batch.new()
    with batch.changeset() as cs:
        account = cs.records.create("account", {"name": f"Account {t}"})
        contact = cs.records.create(
            "contact",
            {"firstname": "Grace", "lastname": t, "parentcustomerid_account@odata.bind": account},
        )
        cs.records.update("contact", contact, {"jobtitle": "Admiral"})
    # The client writes this query's $filter unencoded into the request line.
    batch.records.list("contact", filter=f"lastname eq '{t}'", select=["firstname", "jobtitle"])
    result = batch.execute()
    statuses = [r.status_code for r in result.responses]
    assert statuses == [204, 204, 204, 200], [
        (r.status_code, r.error_message) for r in result.responses
    ]
    rows = result.responses[3].data["value"]
    assert [(r["firstname"], r["jobtitle"]) for r in rows] == [("Grace", "Admiral")], rows
    created = result.responses[1].entity_id
    row = s.client.records.retrieve("contact", created, select=["_parentcustomerid_value"])
    assert row["_parentcustomerid_value"] == result.responses[0].entity_id, row.data


@check(
    "https://learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api#change-sets"
)
def a_failed_change_set_rolls_back_and_reports_the_failing_request(s: Suite):
    t = tag()
    batch = s.client.batch.new()
    with batch.changeset() as cs:
        cs.records.create("contact", {"firstname": "First", "lastname": t})
        cs.records.create("contact", {"firstname": "x" * 51, "lastname": t})
    result = batch.execute()
    assert [(r.status_code, r.content_id) for r in result.responses] == [(400, "2")], [
        (r.status_code, r.content_id, r.error_message) for r in result.responses
    ]
    assert result.responses[0].error_code == "0x80044331", result.responses[0]
    assert len(s.tagged(t)) == 0, "the change set rolled back its first create"


@check(
    "https://learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api#handling-errors"
)
def a_batch_stops_at_the_first_failure_unless_it_asks_to_continue_on_error(s: Suite):
    def batch(t):
        b = s.client.batch.new()
        b.records.create("contact", {"firstname": "x" * 51, "lastname": t})
        b.records.create("contact", {"firstname": "Second", "lastname": t})
        return b

    t = tag()
    stopped = batch(t).execute()
    assert [r.status_code for r in stopped.responses] == [400], stopped.responses
    assert len(s.tagged(t)) == 0, "the second request never ran"
    t = tag()
    continued = batch(t).execute(continue_on_error=True)
    assert [r.status_code for r in continued.responses] == [400, 204], continued.responses
    assert [r["firstname"] for r in s.tagged(t)] == ["Second"]


@check(
    "https://learn.microsoft.com/troubleshoot/power-platform/power-apps/dataverse/web-api-client-errors"
)
def a_missing_row_or_segment_answers_404_with_the_dataverse_error_body(s: Suite):
    e = s.raises(lambda: s.client.records.get("contact", MISSING), 404)
    assert e.details.get("service_error_code") == "0x80040217", e.details
    assert "Does Not Exist" in e.message, e.message
    assert e.details.get("service_request_id"), f"no x-ms-service-request-id: {e.details}"
    with s.odata() as od:
        segment = s.raises(lambda: od._request("get", f"{od.api}/Account"), 404)
    assert segment.details.get("service_error_code") == "0x8006088a", segment.details
    assert "Resource not found for the segment 'Account'" in segment.message, segment.message


@check("https://learn.microsoft.com/power-apps/developer/data-platform/api-limits#retry-operations")
def throttling_answers_429_with_retry_after_and_the_service_protection_code(s: Suite):
    s.control(
        "PUT", "/_sim/faults", {"rate": 1.0, "kinds": ["too_many_requests"], "retry_after_secs": 7}
    )
    try:
        e = s.raises(lambda: s.client.records.list("contact", top=1), 429)
    finally:
        s.control("DELETE", "/_sim/faults")
    assert e.details.get("retry_after") == 7, e.details
    assert e.is_transient, "a 429 is transient"
    assert e.details.get("service_error_code") == "0x80072322", e.details


@check("https://learn.microsoft.com/power-apps/developer/data-platform/bulk-operations#createmultiple")
def create_multiple_answers_the_ids_of_every_created_row(s: Suite):
    t = tag()
    ids = s.client.records.create(
        "contact", [{"firstname": f, "lastname": t} for f in ("A", "B", "C")]
    )
    assert len(ids) == 3, ids
    assert [s.client.records.retrieve("contact", i)["firstname"] for i in ids] == ["A", "B", "C"]


@check("https://learn.microsoft.com/power-apps/developer/data-platform/bulk-operations#updatemultiple")
def update_multiple_changes_every_row_it_names(s: Suite):
    t = tag()
    ids = s.contacts(t, ["A", "B"])
    s.client.records.update("contact", ids, {"jobtitle": "Engineer"})
    assert [r["jobtitle"] for r in s.client.records.list("contact", filter=f"lastname eq '{t}'", select=["jobtitle"])] == [
        "Engineer",
        "Engineer",
    ]
    s.client.records.update("contact", ids, [{"jobtitle": "One"}, {"jobtitle": "Two"}])
    assert [s.client.records.retrieve("contact", i)["jobtitle"] for i in ids] == ["One", "Two"]
    s.raises(lambda: s.client.records.update("contact", [ids[0], MISSING], {"jobtitle": "X"}), 404)
    assert s.client.records.retrieve("contact", ids[0])["jobtitle"] == "One", "rolled back"


@check("https://learn.microsoft.com/power-apps/developer/data-platform/delete-data-bulk")
def bulk_delete_runs_as_a_system_job_that_deletes_the_rows(s: Suite):
    t = tag()
    ids = s.contacts(t, ["A", "B", "C"])
    job = s.client.records.delete("contact", ids[:2])
    assert job, "BulkDelete answers its job id"
    with s.odata() as od:
        for _ in range(200):
            state = od._request(
                "get", f"{od.api}/asyncoperations({job})?$select=statecode,statuscode,operationtype"
            ).json()
            if state["statecode"] == 3:
                break
            time.sleep(0.05)
    assert state["statecode"] == 3 and state["statuscode"] == 30, state
    assert state["operationtype"] == 13, state
    assert [r["firstname"] for r in s.tagged(t)] == ["C"]


@check(
    "https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors#identify-status-codes"
)
def what_the_sandbox_leaves_out_answers_501_not_implemented(s: Suite):
    sql = s.raises(lambda: s.client.query.sql("SELECT TOP 1 fullname FROM contact"), 501)
    assert sql.details.get("service_error_code") == "0x80040219", sql.details
    upsert = s.raises(
        lambda: s.client.records.upsert(
            "contact",
            [
                {"alternate_key": {"emailaddress1": "a@example.com"}, "record": {"lastname": "A"}},
                {"alternate_key": {"emailaddress1": "b@example.com"}, "record": {"lastname": "B"}},
            ],
        ),
        501,
    )
    assert upsert.details.get("service_error_code") == "0x80040219", upsert.details


@check(
    "https://learn.microsoft.com/python/api/powerplatform-dataverse-client/powerplatform.dataverse.core.errors.httperror"
)
def every_answer_names_its_service_request_id(s: Suite):
    with s.odata() as od:
        first = od._request("get", f"{od.api}/WhoAmI")
        second = od._request("get", f"{od.api}/WhoAmI")
    ids = [r.headers.get("x-ms-service-request-id") for r in (first, second)]
    assert all(ids) and ids[0] != ids[1], ids
    uuid.UUID(ids[0])


# --- running ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim", default=os.environ.get("DATAVERSE_SIM_URL", "http://127.0.0.1:8801"))
    parser.add_argument("--tenant", default=os.environ.get("DATAVERSE_TENANT_ID", SANDBOX_TENANT))
    parser.add_argument("--client-id", default=os.environ.get("DATAVERSE_CLIENT_ID", SANDBOX_ADMIN_CLIENT))
    parser.add_argument("-k", dest="only", help="run only the checks whose name contains this")
    args = parser.parse_args()
    secret = os.environ.get("DATAVERSE_CLIENT_SECRET", SANDBOX_ADMIN_SECRET)

    # Everything here is on 127.0.0.1: a proxy from the environment must not get in between.
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = "127.0.0.1,localhost"

    with TlsFront(args.sim) as front:
        # requests (the client, azure-core, MSAL) trusts the front's certificate through this.
        os.environ["REQUESTS_CA_BUNDLE"] = front.ca_bundle
        from azure.identity import ClientSecretCredential
        from PowerPlatform.Dataverse.client import DataverseClient
        from PowerPlatform.Dataverse.core import errors

        credential = ClientSecretCredential(
            args.tenant,
            args.client_id,
            secret,
            authority=front.url,
            disable_instance_discovery=True,
        )
        started = time.monotonic()
        failed = []
        ran = 0
        with DataverseClient(front.url, credential) as client:
            suite = Suite(client, args.sim, errors)
            for name, doc, fn in CHECKS:
                if args.only and args.only not in name:
                    continue
                ran += 1
                t0 = time.monotonic()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        fn(suite)
                except Exception as e:  # a failed check, whatever raised
                    failed.append(name)
                    print(f"FAIL {name} ({time.monotonic() - t0:.2f} s)\n     follows {doc}")
                    detail = "".join(traceback.format_exception(e)).rstrip()
                    print("     " + detail.replace("\n", "\n     "))
                else:
                    print(f"ok   {name} ({time.monotonic() - t0:.2f} s)")
        print(
            f"{ran} checks against {front.url} (TLS front for {args.sim}): "
            f"{ran - len(failed)} passed, {len(failed)} failed in {time.monotonic() - started:.1f} s"
        )
        return 1 if failed or ran == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
