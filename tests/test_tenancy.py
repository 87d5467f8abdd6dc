"""Who owns a stored record: the tenant in `created_by_id`, with records written before tenants
existed belonging to the default tenant."""

from __future__ import annotations

import pytest

from app.ids import DEFAULT_USER_ID
from app.tenancy import DEFAULT_TENANT, InvalidTenant, check_tenant, owner_of


@pytest.mark.parametrize("created_by_id", [None, "", DEFAULT_USER_ID])
def test_given_a_record_from_before_tenants_when_its_owner_is_asked_then_it_is_the_default_tenant(
        created_by_id: str | None):
    assert owner_of(created_by_id) == DEFAULT_TENANT == "default"


@pytest.mark.parametrize("tenant", ["default", "b", "acme-corp.eu_1"])
def test_given_a_record_of_a_tenant_when_its_owner_is_asked_then_it_is_that_tenant(tenant: str):
    assert owner_of(tenant) == tenant


def test_given_a_user_id_that_is_not_letta_s_default_when_its_owner_is_asked_then_it_is_not_the_default_tenant():
    assert owner_of("user-11111111-1111-4111-8111-111111111111") != DEFAULT_TENANT


@pytest.mark.parametrize("name", ["", "B", "-a", "a b", "a:b", "a" * 65, "ténant", "a\n"])
def test_given_a_name_outside_the_pattern_when_checked_then_it_is_refused(name: str):
    with pytest.raises(InvalidTenant):
        check_tenant(name)
