"""DKIM keys on a sending domain's page, done in Chromium: generate, publish, activate."""

from __future__ import annotations

import re

import dns.name
import dns.zone

from django_smtprelay.domains.resolver import clear_cache
from django_smtprelay.models import DkimKey, Route, SenderDomain
from django_smtprelay.signing.keys import zone_line

from .conftest import SHOP_ZONE
from .test_admin_in_browser import ADMIN, assert_fits, whole_page


def publish(site, *keys: DkimKey) -> None:
    """Publish the keys' records as the page shows them, in the site's DNS server."""
    text = SHOP_ZONE + "\n".join(zone_line(k.name, k.txt_record) for k in keys) + "\n"
    origin = dns.name.from_text("shop.test.")
    site.dns.zones[origin] = dns.zone.from_text(
        text, origin=origin, relativize=False, check_origin=False
    )
    clear_cache()


def test_generate_publish_and_activate_a_key(browse, site, screenshot_dir):
    Route.objects.filter(name="primary-relay").update(dkim_sign=True)
    domain = SenderDomain.objects.get(domain="shop.test")
    page = browse()
    page.goto(f"{site.url}{ADMIN}/senderdomain/{domain.pk}/change/")
    keys = page.locator("#dkim-keys")
    assert "No active DKIM key: mail from shop.test is sent unsigned." in keys.inner_text()

    page.locator('input[name="selector"]').fill("2026a")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(re.compile(r"#dkim-keys$"))
    page.locator('input[name="selector"]').fill("2026e")
    page.locator('select[name="algorithm"]').select_option("ed25519-sha256")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(re.compile(r"#dkim-keys$"))
    rsa, ed = DkimKey.objects.get(selector="2026a"), DkimKey.objects.get(selector="2026e")
    text = keys.inner_text()
    for string in rsa.txt_strings + ed.txt_strings:
        assert f'"{string}"' in text
    assert rsa.private_key.splitlines()[1] not in page.content()

    # Not published yet: refused.
    keys.locator("tr", has_text="2026a").get_by_role("button", name="Activate").click()
    assert "Not activated, 2026a._domainkey.shop.test" in page.locator(".messagelist").inner_text()

    publish(site, rsa, ed)
    for selector in ("2026a", "2026e"):
        keys.locator("tr", has_text=selector).get_by_role("button", name="Activate").click()
        assert "From now on" in page.locator(".messagelist").inner_text()
    assert set(DkimKey.objects.filter(active=True).values_list("selector", flat=True)) == {
        "2026a",
        "2026e",
    }
    page.get_by_role("button", name="Check now").click()
    page.wait_for_url(re.compile(rf"/senderdomain/{domain.pk}/change/"))
    # The routes table's row (its DKIM cell names the signing domain and selectors).
    route = page.locator(".smtprelay-domain-report tr", has_text="d=shop.test s=").first
    cells = route.locator("td").all_inner_texts()
    assert cells[0] == "primary-relay" and cells[3].startswith("pass"), cells
    assert "No active DKIM key" not in keys.inner_text()
    assert_fits(page)
    whole_page(page, screenshot_dir / "sending-domain-dkim.png")
