# Rendered by atl-pipeline from domains.yml. Edit terraform_templates/hcloud/, not this file.

# Each domain: A and AAAA to the load balancer, through Cloudflare's proxy unless the domain
# says otherwise (a proxied record's TTL is automatic, 1).
resource "cloudflare_dns_record" "a" {
  for_each = local.records
  zone_id  = each.value.zone_id
  name     = each.key
  type     = "A"
  content  = hcloud_load_balancer.main.ipv4
  proxied  = each.value.proxied
  ttl      = each.value.ttl
  comment  = "atl-pipeline: ${local.name}"
}

resource "cloudflare_dns_record" "aaaa" {
  for_each = local.records
  zone_id  = each.value.zone_id
  name     = each.key
  type     = "AAAA"
  content  = hcloud_load_balancer.main.ipv6
  proxied  = each.value.proxied
  ttl      = each.value.ttl
  comment  = "atl-pipeline: ${local.name}"
}

# The same SSL mode in each zone of target.cloudflare.zones that has a proxied record.
resource "cloudflare_zone_setting" "ssl_zones" {
  for_each   = { for name, zone in local.zones : name => zone.zone_id if zone.proxied }
  zone_id    = each.value
  setting_id = "ssl"
  value      = "strict"
  depends_on = [hcloud_load_balancer_service.https]
}

# The same lowest TLS version in each zone of target.cloudflare.zones that holds a record.
resource "cloudflare_zone_setting" "min_tls_version_zones" {
  for_each   = local.zones
  zone_id    = each.value.zone_id
  setting_id = "min_tls_version"
  value      = local.min_tls_version
}

# The same for each zone of target.cloudflare.zones that has a certificate domain: a Hetzner
# zone of its name, and the delegation of each of its domains' `_acme-challenge` names to it.
resource "hcloud_zone" "acme_zones" {
  for_each = { for name, zone in local.zones : name => zone if length(zone.certificate_domains) > 0 }
  name     = each.key
  mode     = "primary"
  labels   = local.labels
}

resource "cloudflare_dns_record" "acme_delegation_zones" {
  for_each = { for item in flatten([for name, zone in local.zones : [for pair in setproduct(zone.certificate_domains, [0, 1, 2]) : { zone = name, domain = pair[0], index = pair[1] }]]) : "${item.domain} ${item.index}" => item }
  zone_id  = local.zones[each.value.zone].zone_id
  name     = "_acme-challenge.${each.value.domain}"
  type     = "NS"
  content  = trimsuffix(hcloud_zone.acme_zones[each.value.zone].authoritative_nameservers.assigned[each.value.index], ".")
  ttl      = 300
}
