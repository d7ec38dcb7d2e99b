# Rendered by atl-pipeline from domains.yml. Edit terraform_templates/hcloud/, not this file.
#
# One load balancer in front of every server, over the private network. Hetzner's load
# balancer cannot route by Host, so each server's router does: the load balancer sends
# HTTP and HTTPS (terminated here, with the managed certificate) to its port 80, and
# checks that the router answers. Each service's own health path is checked on the
# servers, by the router and by Docker.

resource "hcloud_load_balancer" "main" {
  name               = local.name
  load_balancer_type = local.load_balancer_type
  location           = local.location
  labels             = local.labels

  algorithm {
    type = "least_connections"
  }
}

resource "hcloud_load_balancer_network" "main" {
  load_balancer_id = hcloud_load_balancer.main.id
  subnet_id        = hcloud_network_subnet.servers.id
}

resource "hcloud_load_balancer_target" "servers" {
  type             = "label_selector"
  load_balancer_id = hcloud_load_balancer.main.id
  label_selector   = "atl-project=${local.name},role=node"
  use_private_ip   = true
  depends_on       = [hcloud_load_balancer_network.main]
}

resource "hcloud_load_balancer_service" "http" {
  load_balancer_id = hcloud_load_balancer.main.id
  protocol         = "http"
  listen_port      = 80
  destination_port = 80

  health_check {
    protocol = "http"
    port     = 80
    interval = 10
    timeout  = 5
    retries  = 3
    http {
      path         = "/.atl/ready"
      status_codes = ["200"]
    }
  }
}

# Each service's TCP ports (XMPP, IRC), passed as they are to the servers: only the servers
# whose replica listens on the port pass the health check, so only they get its traffic.
resource "hcloud_load_balancer_service" "tcp" {
  for_each         = toset([for port in local.tcp_ports : tostring(port)])
  load_balancer_id = hcloud_load_balancer.main.id
  protocol         = "tcp"
  listen_port      = tonumber(each.value)
  destination_port = tonumber(each.value)

  health_check {
    protocol = "tcp"
    port     = tonumber(each.value)
    interval = 10
    timeout  = 5
    retries  = 3
  }
}

# Let's Encrypt through Hetzner, which answers the DNS challenge in its own zone: the
# Cloudflare zone delegates each domain's `_acme-challenge` to it (dns.tf). Its domains cannot change in place: a new set makes a new certificate (named after the
# set, so it can exist before the old one is deleted).
resource "hcloud_managed_certificate" "tls" {
  name         = "${local.name}-${substr(sha256(join(",", local.certificate_domains)), 0, 12)}"
  domain_names = local.certificate_domains
  labels       = local.labels
  depends_on   = [cloudflare_dns_record.acme_delegation_zones]

  lifecycle {
    create_before_destroy = true
  }
}

resource "hcloud_load_balancer_service" "https" {
  load_balancer_id = hcloud_load_balancer.main.id
  protocol         = "https"
  listen_port      = 443
  destination_port = 80

  http {
    certificates = [hcloud_managed_certificate.tls.id]
  }

  health_check {
    protocol = "http"
    port     = 80
    interval = 10
    timeout  = 5
    retries  = 3
    http {
      path         = "/.atl/ready"
      status_codes = ["200"]
    }
  }
}
