"""The dashboard in a real browser, on a Durable whose messages run in this process
(``DurableTestKit``): lists, counts, filters, paging, a workflow's page, every action
through its confirmation and CSRF field, bulk actions, escaping, the token, read-only."""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from celery import Celery

from celery_durable import Durable, SetWorkflowID
from celery_durable.dashboard import create_app
from celery_durable.errors import MaxStepRetriesExceeded
from celery_durable.runtime.workflows import StartRequest, record_start
from celery_durable.testing import DurableTestKit
from celery_durable.types import WorkflowRecord
from tests.unit.helpers import uid

app = Celery("dashboard_pages")
durable = Durable(app)
EFFECTS: Counter[str] = Counter()
FIXED: set[str] = set()
TOKEN = "s3cret-token-for-tests"


class Declined(Exception):
    pass


@durable.step()
def step_a(x: int) -> int:
    EFFECTS["a"] += 1
    return x + 1


@durable.step()
def step_b(x: int) -> int:
    EFFECTS["b"] += 1
    return x * 2


@durable.step()
def step_c(x: int) -> int:
    EFFECTS["c"] += 1
    return x - 3


@durable.workflow()
def three_steps(x: int) -> int:
    return step_c(step_b(step_a(x)))


@durable.step(retries=1, interval_seconds=0.01)
def fragile(order: str) -> str:
    if order not in FIXED:
        raise Declined(f"card declined for {order}")
    return f"charged {order}"


@durable.workflow()
def order(order_id: str) -> str:
    return fragile(order_id)


@durable.workflow()
def noop(x: int) -> int:
    return x


@pytest.fixture
def kit() -> Iterator[DurableTestKit]:
    EFFECTS.clear()
    with DurableTestKit(durable) as running:
        yield running


def enqueued(name: str = noop.name, workflow_id: str | None = None) -> str:
    """A workflow recorded and never delivered: it stays ENQUEUED."""
    wid = workflow_id or uid("queued")
    record_start(durable.runtime, StartRequest(wid, name, args=(1,)))
    return wid


def failed_order(workflow_id: str | None = None) -> str:
    wid = workflow_id or uid("order")
    with SetWorkflowID(wid), pytest.raises(MaxStepRetriesExceeded):
        order(wid)
    return wid


def finished(x: int = 1) -> str:
    wid = uid("three")
    with SetWorkflowID(wid):
        three_steps(x)
    return wid


@pytest.fixture
def dashboard(serve: Callable[[Any], str], kit: DurableTestKit) -> str:
    return serve(create_app(durable))


def status_of(workflow_id: str) -> str:
    found = durable.get_workflow_status(workflow_id)
    assert found is not None
    return found.status


def count(tab: Any, status: str) -> int:
    return int(tab.locator(f'a.count[data-status="{status}"] strong').inner_text())


def confirm(tab: Any, button: str) -> None:
    """Press an action's button, then Confirm on the page that asks."""
    tab.get_by_role("button", name=button).click()
    tab.get_by_role("button", name="Confirm").click()


# pages ----------------------------------------------------------------------------
def test_list_counts_filters_and_keyset_paging(page: Any, dashboard: str) -> None:
    queued = {enqueued() for _ in range(55)}
    done = [finished(), finished()]
    failed = failed_order()
    page.goto(dashboard + "/")
    assert (count(page, "ENQUEUED"), count(page, "SUCCESS"), count(page, "ERROR")) == (55, 2, 1)
    assert page.locator("table.workflows tbody tr").count() == 50  # one page
    first = set(page.locator("a.wid").all_inner_texts())
    page.get_by_role("link", name="next page »").click()
    second = set(page.locator("a.wid").all_inner_texts())
    assert len(second) == 8 and not first & second
    assert first | second == queued | set(done) | {failed}
    assert page.get_by_role("link", name="next page »").count() == 0

    page.get_by_role("link", name="« first page").click()
    page.locator("form.filters select[name=status]").select_option("ERROR")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("a.wid").all_inner_texts() == [failed]
    assert "status=ERROR" in page.url
    page.goto(dashboard + "/")
    page.locator("form.filters input[name=id_prefix]").fill("three-")
    page.get_by_role("button", name="Filter").click()
    assert sorted(page.locator("a.wid").all_inner_texts()) == sorted(done)
    page.goto(dashboard + "/?created_after=not-a-date")
    assert "created after: not a date" in page.locator(".problem").inner_text()


def test_a_workflow_page_shows_steps_attempt_errors_and_children(page: Any, dashboard: str) -> None:
    parent = failed_order()
    child = uid("child")
    now = durable.runtime.clock.now_ms()
    durable.store.insert_workflow(
        WorkflowRecord(child, noop.name, "ENQUEUED", parent_workflow_id=parent,
                       created_at_ms=now, updated_at_ms=now)
    )  # fmt: skip
    page.goto(dashboard + "/")
    page.get_by_role("link", name=parent).click()
    assert page.locator("h1 .badge").inner_text() == "ERROR"
    errors = page.locator("li.attempt-error")
    assert errors.count() == 2  # retries=1: two attempts, each error recorded
    for n in range(2):
        assert f"attempt {n}" in errors.nth(n).inner_text()
        assert f"card declined for {parent}" in errors.nth(n).inner_text()
    assert "tests.dashboard.test_dashboard_pages.Declined" in errors.first.inner_text()
    assert "MaxStepRetriesExceeded" in page.locator(".error .etype").first.inner_text()
    page.locator("ul.children").get_by_role("link", name=child).click()
    assert page.locator("h1 .wid").inner_text() == child
    page.locator("a.parent").click()
    assert page.locator("h1 .wid").inner_text() == parent


def test_executors_and_stalled_workflows(page: Any, dashboard: str, kit: DurableTestKit) -> None:
    now = durable.runtime.clock.now_ms()
    stalled = uid("stalled")
    durable.store.insert_workflow(
        WorkflowRecord(stalled, noop.name, "PENDING", executor_id="gone-executor",
                       created_at_ms=now, updated_at_ms=now)
    )  # fmt: skip
    page.goto(dashboard + "/executors")
    assert page.locator("#stalled").inner_text() == "1"
    assert page.locator("ul.stalled").get_by_role("link", name=stalled).count() == 1
    rows = page.locator("table.executors tbody tr")
    assert rows.count() == 1 and "durable-testkit" in rows.first.inner_text()
    assert "LIVE" in rows.first.inner_text()


# actions --------------------------------------------------------------------------
def test_cancel_resume_and_fork_through_the_browser(page: Any, dashboard: str) -> None:
    queued = enqueued()
    page.goto(f"{dashboard}/workflows/{queued}")
    confirm(page, "Cancel…")
    assert page.locator(".notice").inner_text() == "cancelled"
    assert page.locator("h1 .badge").inner_text() == "CANCELLED" == status_of(queued)

    failed = failed_order()
    page.goto(f"{dashboard}/workflows/{failed}")
    FIXED.add(failed)  # the fix is deployed; resume retries the failed step
    confirm(page, "Resume…")
    assert page.locator(".notice").inner_text() == "resume: RESUMED"
    assert page.locator("h1 .badge").inner_text() == "SUCCESS"
    assert durable.retrieve_workflow(failed).get_result() == f"charged {failed}"

    done = finished(5)
    assert EFFECTS == {"a": 1, "b": 1, "c": 1}
    page.goto(f"{dashboard}/workflows/{done}")
    page.locator("select[name=start_step]").select_option("2")
    page.get_by_role("button", name="Fork…").click()
    assert "steps from 2 on run again" in page.locator(".confirm").inner_text()
    page.get_by_role("button", name="Confirm").click()
    fork = page.locator("h1 .wid").inner_text()
    assert fork != done and page.locator("h1 .badge").inner_text() == "SUCCESS"
    assert EFFECTS == {"a": 1, "b": 1, "c": 2}  # only step 2 ran again
    assert durable.retrieve_workflow(fork).get_result() == 9


def test_bulk_cancel_and_resume_what_the_filter_matches(page: Any, dashboard: str) -> None:
    prefix = uid("bulk") + "-"
    matching = {enqueued(workflow_id=f"{prefix}{i}") for i in range(5)}
    other = enqueued()
    page.goto(dashboard + "/")
    page.locator("form.filters input[name=id_prefix]").fill(prefix)
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name="Cancel all matching…").click()
    assert "5 workflows match" in page.locator(".confirm").inner_text()
    page.get_by_role("button", name="Confirm").click()
    assert page.locator(".notice").inner_text() == "cancelled 5 of 5 matching"
    assert {status_of(w) for w in matching} == {"CANCELLED"}
    assert status_of(other) == "ENQUEUED"
    assert page.locator("form.filters input[name=id_prefix]").input_value() == prefix  # filter kept

    confirm(page, "Resume all matching…")
    assert page.locator(".notice").inner_text() == "resumed 5 of 5 matching"
    assert {status_of(w) for w in matching} == {"SUCCESS"}  # the kit ran them at once
    assert status_of(other) == "ENQUEUED"


# security -------------------------------------------------------------------------
def test_a_script_in_an_argument_or_an_id_renders_as_text(page: Any, dashboard: str) -> None:
    script = "<script>alert(1)</script>"
    wid = failed_order(f'<img src=x onerror="alert(2)">{uid("x")}')
    with SetWorkflowID(uid("script")):
        noop_id = durable.start_workflow(noop, script).workflow_id
    page.goto(dashboard + "/")
    assert page.get_by_role("link", name=wid).count() == 1
    page.goto(f"{dashboard}/workflows/{noop_id}")
    assert script in page.locator("pre.input").inner_text()
    assert script in page.locator("pre.output").inner_text()
    page.get_by_role("link", name="Workflows").click()
    page.get_by_role("link", name=wid).click()
    assert f"card declined for {wid}" in page.locator("li.attempt-error").first.inner_text()
    assert page.locator("img").count() == 0
    # only the dashboard's own script: nothing from the data became a script element
    srcs = page.locator("script").evaluate_all("els => els.map(e => e.src)")
    assert len(srcs) == 1 and srcs[0].endswith("/static/dashboard.js")


def test_without_the_token_every_request_gets_401(
    browser: Any, serve: Callable[[Any], str], kit: DurableTestKit
) -> None:
    url = serve(create_app(durable, token=TOKEN))
    anonymous = browser.new_context()
    response = anonymous.request.get(url + "/")  # a navigation would show the login prompt
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    anonymous.close()
    for path in ("/", "/metrics", "/static/dashboard.css", "/executors"):
        assert httpx.get(url + path).status_code == 401
        bad = httpx.get(url + path, headers={"Authorization": "Bearer wrong-token-123456"})
        assert bad.status_code == 401
    bearer = browser.new_context(extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
    tab = bearer.new_page()
    assert tab.goto(url + "/").status == 200
    assert tab.locator("a.count").count() > 0
    bearer.close()
    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    assert (
        httpx.get(url + "/metrics", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    )


def test_a_post_without_the_csrf_token_is_refused(page: Any, dashboard: str) -> None:
    queued = enqueued()
    page.goto(f"{dashboard}/workflows/{queued}")  # gets the CSRF cookie
    form = {"workflow_id": queued, "confirmed": "yes"}
    for extra in ({}, {"csrf_token": "forged-" + "x" * 40}):
        response = page.request.post(f"{dashboard}/actions/cancel", form={**form, **extra})
        assert response.status == 403
        assert "CSRF" in response.text()
    assert httpx.post(f"{dashboard}/bulk/cancel", data={"confirmed": "yes"}).status_code == 403
    assert status_of(queued) == "ENQUEUED"
    token = page.locator("input[name=csrf_token]").first.input_value()
    ok = page.request.post(f"{dashboard}/actions/cancel", form={**form, "csrf_token": token})
    assert ok.status == 200 and status_of(queued) == "CANCELLED"


def test_read_only_mode_shows_no_action_and_refuses_posts(
    page: Any, serve: Callable[[Any], str], kit: DurableTestKit
) -> None:
    url = serve(create_app(durable, read_only=True))
    queued = enqueued()
    page.goto(f"{url}/workflows/{queued}")
    assert page.locator("form[method=post]").count() == 0
    assert page.locator(".badge.ro").inner_text() == "read-only"
    page.goto(url + "/")
    assert page.locator("form[method=post]").count() == 0
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["durable_csrf"]
    form = {"workflow_id": queued, "confirmed": "yes", "csrf_token": cookie}
    response = page.request.post(f"{url}/actions/cancel", form=form)
    assert response.status == 403 and "read-only" in response.text()
    assert status_of(queued) == "ENQUEUED"


def test_the_app_mounts_under_a_prefix(serve: Callable[[Any], str], kit: DurableTestKit) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    queued = enqueued()
    url = serve(Starlette(routes=[Mount("/ops/durable", app=create_app(durable))]))
    listing = httpx.get(url + "/ops/durable/")
    assert listing.status_code == 200
    links = re.findall(r'href="([^"]*workflows/[^"]*)"', listing.text)
    assert f"{url}/ops/durable/workflows/{queued}" in links
    assert httpx.get(f"{url}/ops/durable/workflows/{queued}").status_code == 200
    assert "/ops/durable/static/dashboard.css" in listing.text
