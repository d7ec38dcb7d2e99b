# Rendered by atl-pipeline from domains.yml. Edit terraform_templates/hcloud/, not this file.

# Each domain: A and AAAA to the load balancer, through Cloudflare's proxy unless the domain
# says otherwise (a proxied record's TTL is automatic, 1).
resource "cloudflare_dns_record" "a" {
  for_each = local.records
  zone_id  = local.zone_id
  name     = each.key
  type     = "A"
  content  = hcloud_load_balancer.main.ipv4
  proxied  = each.value.proxied
  ttl      = each.value.ttl
  comment  = "atl-pipeline: ${local.name}"
}

resource "cloudflare_dns_record" "aaaa" {
  for_each = local.records
  zone_id  = local.zone_id
  name     = each.key
  type     = "AAAA"
  content  = hcloud_load_balancer.main.ipv6
  proxied  = each.value.proxied
  ttl      = each.value.ttl
  comment  = "atl-pipeline: ${local.name}"
}

# SSL mode Full (strict): Cloudflare reaches the load balancer over HTTPS when the visitor
# used HTTPS, and verifies its certificate. Under "Flexible" it would send every request
# over HTTP, which each router redirects to HTTPS: a loop. The mode is the zone's, so it
# holds for every proxied name in the zone; it is declared only while a record here is
# proxied. Deleting it changes nothing (the provider's delete is empty): the zone keeps the
# mode. Every proxied domain has `ssl: true` (a validation rule), so the HTTPS service exists.
resource "cloudflare_zone_setting" "ssl" {
  zone_id    = local.zone_id
  setting_id = "ssl"
  value      = "strict"
  depends_on = [hcloud_load_balancer_service.https]
}

# Hetzner issues managed certificates only for names whose DNS challenge it can answer: a
# zone of the same name at Hetzner, to which Cloudflare delegates each domain's
# `_acme-challenge` name.
resource "hcloud_zone" "acme" {
  name   = local.zone
  mode   = "primary"
  labels = local.labels
}

# For each certificate domain and each of the three nameservers Hetzner assigns a zone.
# Hetzner gives them fully qualified, with a trailing dot ("hydrogen.ns.hetzner.com."), and
# Cloudflare stores an NS record's content without it: kept, the dot would show as an
# in-place update in every later plan, and make the drift check fire.
resource "cloudflare_dns_record" "acme_delegation" {
  for_each = { for pair in setproduct(local.certificate_domains, [0, 1, 2]) : "${pair[0]} ${pair[1]}" => pair }
  zone_id  = local.zone_id
  name     = "_acme-challenge.${each.value[0]}"
  type     = "NS"
  content  = trimsuffix(hcloud_zone.acme.authoritative_nameservers.assigned[each.value[1]], ".")
  ttl      = 300
}
