# Rendered by atl-pipeline from domains.yml. Edit terraform_templates/hcloud/, not this file.
#
# Hetzner Cloud: servers on a private network, a firewall that denies all but SSH from the
# configured ranges, a load balancer with a managed Let's Encrypt certificate, and the
# domains' records at Cloudflare. Every value comes from `locals`.

locals {
  name                = "allthingslinux-production"
  location            = "fsn1"
  network_zone        = "eu-central"
  network             = "10.0.0.0/16"
  subnet              = "10.0.1.0/24"
  servers             = { "allthingslinux-production-1" = { "group" = "default", "type" = "cx23", "location" = "fsn1", "ip" = null }, "allthingslinux-production-2" = { "group" = "default", "type" = "cx23", "location" = "fsn1", "ip" = null } }
  tcp_ports           = []
  sshd                = { "password_auth" = false, "root_login" = "prohibit-password", "max_auth_tries" = 3 }
  image               = "debian-13"
  load_balancer_type  = "lb11"
  ssh_public_key      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyReplaceWithTheOperatorsOwn00000 ops@allthingslinux.org"
  ssh_from            = ["203.0.113.0/24"]
  ssh_port            = 22
  zone                = "allthingslinux.org"
  zone_id             = "0123456789abcdef0123456789abcdef"
  min_tls_version     = null
  certificate_domains = ["api.allthingslinux.org", "www.allthingslinux.org", "docs.allthingslinux.org"]
  labels              = { "atl-project" = "allthingslinux-production" }

  records = {
    "api.allthingslinux.org" = {
      proxied = true
      ttl     = 1
    }
    "www.allthingslinux.org" = {
      proxied = true
      ttl     = 1
    }
    "docs.allthingslinux.org" = {
      proxied = true
      ttl     = 1
    }
  }

  services = {
    "backend-api" = {
      command        = ["python3", "-m", "atl_pipeline.sample_service", "--port", "{port}"]
      container_port = null
      cpu_millicores = 500
      health_command = null
      health_path    = "/healthz"
      image          = "ghcr.io/allthingslinux/backend-api:1.0.0"
      memory_bytes   = 536870912
      metrics_path   = "/metrics"
      port           = 8100
      release        = "5cf66dc8430a"
      replicas       = 3
      servers        = null
      standby_port   = 8150
      tcp_ports      = []
      volumes        = {}
    }
    "website" = {
      command        = ["python3", "-m", "atl_pipeline.sample_service", "--port", "{port}"]
      container_port = null
      cpu_millicores = 100
      health_command = null
      health_path    = "/healthz"
      image          = "ghcr.io/allthingslinux/website:1.0.0"
      memory_bytes   = 134217728
      metrics_path   = "/metrics"
      port           = 8200
      release        = "d2801e8b073f"
      replicas       = 2
      servers        = null
      standby_port   = 8250
      tcp_ports      = []
      volumes        = {}
    }
  }

  domains = {
    "api.allthingslinux.org" = {
      cpu_millicores = 500
      memory_bytes   = 536870912
      monitoring     = true
      replicas       = 3
      service        = "backend-api"
      ssl            = true
      url            = "https://api.allthingslinux.org/"
    }
    "www.allthingslinux.org" = {
      cpu_millicores = 100
      memory_bytes   = 134217728
      monitoring     = true
      replicas       = 2
      service        = "website"
      ssl            = true
      url            = "https://www.allthingslinux.org/"
    }
    "docs.allthingslinux.org" = {
      cpu_millicores = 100
      memory_bytes   = 134217728
      monitoring     = true
      replicas       = 2
      service        = "website"
      ssl            = true
      url            = "https://docs.allthingslinux.org/"
    }
  }
}

resource "hcloud_ssh_key" "operator" {
  name       = "${local.name}-operator"
  public_key = local.ssh_public_key
  labels     = local.labels
}

resource "hcloud_network" "private" {
  name     = local.name
  ip_range = local.network
  labels   = local.labels
}

resource "hcloud_network_subnet" "servers" {
  network_id   = hcloud_network.private.id
  type         = "cloud"
  network_zone = local.network_zone
  ip_range     = local.subnet
}

# The servers' public interfaces: denied unless a rule allows it, and only SSH from ssh_from
# does. Hetzner's firewalls filter the public interfaces only, never the private network,
# where the load balancer reaches the routers (port 80) and the routers the replicas: a rule
# for HTTP or HTTPS would open nothing they use. Nothing else needs the public addresses
# inbound: the certificate is the load balancer's, issued over DNS; outbound is not filtered.
resource "hcloud_firewall" "servers" {
  name   = local.name
  labels = local.labels

  dynamic "rule" {
    for_each = length(local.ssh_from) > 0 ? [local.ssh_from] : []
    content {
      description = "SSH from the operators' ranges"
      direction   = "in"
      protocol    = "tcp"
      port        = tostring(local.ssh_port)
      source_ips  = rule.value
    }
  }
}

# Docker runs the services (Compose v2: Debian 13's docker-compose package); the pipeline
# ships each server's Compose file over SSH, on the configured port.
# Each server of each group (`<name>-<n>` in the group `default`, `<name>-<group>-<n>` in the
# others), its sshd hardened by a drop-in that cloud-init writes.
resource "hcloud_server" "node" {
  for_each     = local.servers
  name         = each.key
  server_type  = each.value.type
  image        = local.image
  location     = each.value.location
  ssh_keys     = [hcloud_ssh_key.operator.id]
  firewall_ids = [hcloud_firewall.servers.id]
  labels       = merge(local.labels, { role = "node", group = each.value.group })
  # a function call, not an interpolation: Checkov's HCL parser cannot read an object inside "${...}"
  user_data = join("", ["#cloud-config\n", yamlencode({
    packages = ["docker.io", "docker-compose"]
    write_files = [{
      path    = "/etc/ssh/sshd_config.d/atl.conf"
      content = "Port ${local.ssh_port}\nPubkeyAuthentication yes\nPasswordAuthentication ${local.sshd.password_auth ? "yes" : "no"}\nPermitRootLogin ${local.sshd.root_login}\nMaxAuthTries ${local.sshd.max_auth_tries}\n"
    }]
    runcmd = [["sh", "-c", "if systemctl is-active --quiet ssh.socket; then systemctl daemon-reload && systemctl restart ssh.socket; else systemctl restart ssh; fi"]]
  })])

  network {
    subnet_id = hcloud_network_subnet.servers.id
    ip        = each.value.ip
    alias_ips = []
  }

  depends_on = [hcloud_network_subnet.servers]
}
