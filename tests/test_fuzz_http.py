"""Hostile query parameters over HTTP (issue 8 item 6): every GET page without path
parameters, plus an application's pages, receives garbage, huge, Unicode-edge and injection
strings in every query parameter the views read. Never a 500; what is echoed is escaped."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import reliability
from tests.conftest import login
from tests.test_fuzz import INJECTIONS

PARAMS = [
    "program",
    "call",
    "district",
    "state",
    "stage",
    "overdue",
    "mine",
    "q",
    "sort",
    "dir",
    "order",
    "cursor",
    "page",
    "per_page",
    "lang",
    "next",
    "check",
    "download",
    "group",
    "status",
    "from",
    "to",
    "issued_from",
    "issued_to",
    "year",
    "month",
    "limit",
]
value = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(max_size=40),
    st.sampled_from(
        ["-1", "0", "99999999999999999999", "1e308", "NaN", "' OR 1=1 --", "中" * 3000]
    ),
)
query = st.dictionaries(st.sampled_from(PARAMS), value, max_size=6)
_TRIED = {"requests": 0}


def _get_routes(app):
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.arguments and not rule.endpoint.endswith("static"):
            if rule.endpoint in ("auth.logout",) or rule.rule.endswith(".csv"):
                continue
            yield rule.rule


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(params=query)
def test_query_parameters_never_cause_a_500(app, client, make, cert_form, params):
    staff = make.user("city_officer", lead=True)
    finance = make.user("finance")
    applicant = make.applicant()
    call = make.call("certification_reward")
    application = make.application(call, applicant, cert_form)
    pages = list(_get_routes(app))
    pages += [f"/applications/{application.id}", f"/review/applications/{application.id}"]
    for user in (staff, finance, applicant):
        login(client, user)
        for url in pages:
            response = client.get(url, query_string=params)
            _TRIED["requests"] += 1
            assert response.status_code < 500, (url, params, response.status_code)
            if response.mimetype == "text/html":
                assert "<script>alert(1)</script>" not in response.get_data(as_text=True)
    reliability.record(
        "test_query_parameters_never_cause_a_500", requests_tried=_TRIED["requests"], failures=0
    )
