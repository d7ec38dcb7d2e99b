# Rendered by atl-pipeline from domains.yml. Edit terraform_templates/hcloud/, not this file.
#
# Hetzner Cloud: servers on a private network, a firewall that denies all but SSH from the
# configured ranges, a load balancer with a managed Let's Encrypt certificate, and the
# domains' records at Cloudflare. Every value comes from `locals`.

locals {
  name                = "allthingslinux-production"
  location            = "ash"
  network_zone        = "us-east"
  network             = "10.0.0.0/16"
  subnet              = "10.0.1.0/24"
  servers             = { "allthingslinux-production-atl-services-1" = { "group" = "atl-services", "type" = "cx31", "location" = "ash", "ip" = "10.0.1.10" }, "allthingslinux-production-atl-dev-1" = { "group" = "atl-dev", "type" = "cx31", "location" = "ash", "ip" = null }, "allthingslinux-production-atl-tools-1" = { "group" = "atl-tools", "type" = "cx31", "location" = "ash", "ip" = null }, "allthingslinux-production-atl-chat-1" = { "group" = "atl-chat", "type" = "cx21", "location" = "ash", "ip" = null }, "allthingslinux-production-atl-wiki-1" = { "group" = "atl-wiki", "type" = "cx31", "location" = "ash", "ip" = null }, "allthingslinux-production-database-cluster-1" = { "group" = "database-cluster", "type" = "cx31", "location" = "ash", "ip" = null }, "allthingslinux-production-database-cluster-2" = { "group" = "database-cluster", "type" = "cx31", "location" = "ash", "ip" = null } }
  tcp_ports           = [5222, 5269, 6667, 6697]
  sshd                = { "password_auth" = false, "root_login" = "prohibit-password", "max_auth_tries" = 3 }
  image               = "debian-13"
  load_balancer_type  = "lb11"
  ssh_public_key      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlaceholderReplaceWithTheOperatorsOwnKey000000 replace-me"
  ssh_from            = ["203.0.113.0/24"]
  ssh_port            = 22
  zone                = null
  zone_id             = null
  min_tls_version     = "1.2"
  certificate_domains = ["auth.atl.services", "metrics.atl.services", "atl.chat", "atl.wiki"]
  labels              = { "atl-project" = "allthingslinux-production" }

  records = {
    "auth.atl.services" = {
      proxied = true
      ttl     = 1
      zone_id = "00000000000000000000000000000001"
    }
    "metrics.atl.services" = {
      proxied = true
      ttl     = 1
      zone_id = "00000000000000000000000000000001"
    }
    "atl.chat" = {
      proxied = false
      ttl     = 300
      zone_id = "00000000000000000000000000000004"
    }
    "atl.wiki" = {
      proxied = true
      ttl     = 1
      zone_id = "00000000000000000000000000000005"
    }
  }

  zones = {
    "atl.services" = {
      zone_id             = "00000000000000000000000000000001"
      proxied             = true
      certificate_domains = ["auth.atl.services", "metrics.atl.services"]
    }
    "atl.chat" = {
      zone_id             = "00000000000000000000000000000004"
      proxied             = false
      certificate_domains = ["atl.chat"]
    }
    "atl.wiki" = {
      zone_id             = "00000000000000000000000000000005"
      proxied             = true
      certificate_domains = ["atl.wiki"]
    }
  }

  services = {
    "authentik" = {
      command        = ["server"]
      container_port = 9000
      cpu_millicores = 500
      health_command = ["ak", "healthcheck"]
      health_path    = "/-/health/live/"
      image          = "ghcr.io/goauthentik/server:2024.12.3"
      memory_bytes   = 1073741824
      metrics_path   = null
      port           = 8000
      release        = "f48175b42910"
      replicas       = 1
      servers        = "atl-services"
      standby_port   = 8050
      tcp_ports      = []
      volumes        = { "media" = "/media", "templates" = "/templates" }
    }
    "grafana" = {
      command        = null
      container_port = 3000
      cpu_millicores = 250
      health_command = null
      health_path    = "/api/health"
      image          = "grafana/grafana:11.1.0"
      memory_bytes   = 536870912
      metrics_path   = "/metrics"
      port           = 8100
      release        = "b9bb9ea509b8"
      replicas       = 1
      servers        = "atl-services"
      standby_port   = 8150
      tcp_ports      = []
      volumes        = { "data" = "/var/lib/grafana" }
    }
    "element-web" = {
      command        = null
      container_port = 80
      cpu_millicores = 250
      health_command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/"]
      health_path    = "/"
      image          = "vectorim/element-web:v1.11.73"
      memory_bytes   = 268435456
      metrics_path   = null
      port           = 9600
      release        = "f87432ec82ee"
      replicas       = 1
      servers        = "atl-chat"
      standby_port   = 9650
      tcp_ports      = []
      volumes        = {}
    }
    "mediawiki" = {
      command        = null
      container_port = 80
      cpu_millicores = 500
      health_command = null
      health_path    = "/api.php"
      image          = "mediawiki:1.42.1"
      memory_bytes   = 536870912
      metrics_path   = null
      port           = 9700
      release        = "578e7d676a26"
      replicas       = 1
      servers        = "atl-wiki"
      standby_port   = 9750
      tcp_ports      = []
      volumes        = { "images" = "/var/www/html/images" }
    }
    "prometheus" = {
      command        = null
      container_port = 9090
      cpu_millicores = 500
      health_command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/-/healthy"]
      health_path    = "/-/healthy"
      image          = "prom/prometheus:v2.53.0"
      memory_bytes   = 1073741824
      metrics_path   = "/metrics"
      port           = 8200
      release        = "fe71a8184dfc"
      replicas       = 1
      servers        = "atl-services"
      standby_port   = 8250
      tcp_ports      = []
      volumes        = { "data" = "/prometheus" }
    }
    "alertmanager" = {
      command        = null
      container_port = 9093
      cpu_millicores = 250
      health_command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/-/healthy"]
      health_path    = "/-/healthy"
      image          = "prom/alertmanager:v0.27.0"
      memory_bytes   = 268435456
      metrics_path   = "/metrics"
      port           = 8300
      release        = "0ed410cfad2f"
      replicas       = 1
      servers        = "atl-services"
      standby_port   = 8350
      tcp_ports      = []
      volumes        = { "data" = "/alertmanager" }
    }
    "loki" = {
      command        = null
      container_port = 3100
      cpu_millicores = 250
      health_command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/ready"]
      health_path    = "/ready"
      image          = "grafana/loki:3.1.0"
      memory_bytes   = 536870912
      metrics_path   = "/metrics"
      port           = 8400
      release        = "ac6879aaf872"
      replicas       = 1
      servers        = "atl-services"
      standby_port   = 8450
      tcp_ports      = []
      volumes        = { "data" = "/loki" }
    }
    "code-server" = {
      command        = null
      container_port = 8080
      cpu_millicores = 500
      health_command = null
      health_path    = "/healthz"
      image          = "codercom/code-server:4.91.1"
      memory_bytes   = 1073741824
      metrics_path   = null
      port           = 8500
      release        = "6471901ea42c"
      replicas       = 1
      servers        = "atl-dev"
      standby_port   = 8550
      tcp_ports      = []
      volumes        = { "home" = "/home/coder" }
    }
    "nextcloud" = {
      command        = null
      container_port = 80
      cpu_millicores = 500
      health_command = null
      health_path    = "/status.php"
      image          = "nextcloud:29.0.4-apache"
      memory_bytes   = 1073741824
      metrics_path   = null
      port           = 8600
      release        = "4f8cd150d8d1"
      replicas       = 1
      servers        = "atl-tools"
      standby_port   = 8650
      tcp_ports      = []
      volumes        = { "html" = "/var/www/html" }
    }
    "gitea" = {
      command        = null
      container_port = 3000
      cpu_millicores = 250
      health_command = null
      health_path    = "/api/healthz"
      image          = "gitea/gitea:1.22.1-rootless"
      memory_bytes   = 536870912
      metrics_path   = null
      port           = 8700
      release        = "50467b5192c8"
      replicas       = 1
      servers        = "atl-tools"
      standby_port   = 8750
      tcp_ports      = []
      volumes        = { "data" = "/var/lib/gitea", "config" = "/etc/gitea" }
    }
    "vaultwarden" = {
      command        = null
      container_port = 80
      cpu_millicores = 250
      health_command = null
      health_path    = "/alive"
      image          = "vaultwarden/server:1.34.1"
      memory_bytes   = 268435456
      metrics_path   = null
      port           = 8800
      release        = "1c967c24cb3d"
      replicas       = 1
      servers        = "atl-tools"
      standby_port   = 8850
      tcp_ports      = []
      volumes        = { "data" = "/data" }
    }
    "uptime-kuma" = {
      command        = null
      container_port = 3001
      cpu_millicores = 250
      health_command = null
      health_path    = "/api/entry-page"
      image          = "louislam/uptime-kuma:1.23.16"
      memory_bytes   = 268435456
      metrics_path   = null
      port           = 8900
      release        = "fefda660ea35"
      replicas       = 1
      servers        = "atl-tools"
      standby_port   = 8950
      tcp_ports      = []
      volumes        = { "data" = "/app/data" }
    }
    "pastebin" = {
      command        = null
      container_port = 8080
      cpu_millicores = 250
      health_command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/"]
      health_path    = "/"
      image          = "privatebin/nginx-fpm-alpine:1.7.4"
      memory_bytes   = 268435456
      metrics_path   = null
      port           = 9200
      release        = "9b2a2b877dc1"
      replicas       = 1
      servers        = "atl-tools"
      standby_port   = 9250
      tcp_ports      = []
      volumes        = { "data" = "/srv/data" }
    }
    "prosody" = {
      command        = null
      container_port = 5280
      cpu_millicores = 250
      health_command = ["prosodyctl", "shell", "server", "version"]
      health_path    = "/"
      image          = "prosodyim/prosody:13.0"
      memory_bytes   = 268435456
      metrics_path   = null
      port           = 9300
      release        = "d56ba4c109be"
      replicas       = 1
      servers        = "atl-chat"
      standby_port   = 9350
      tcp_ports      = [5222, 5269]
      volumes        = { "data" = "/var/lib/prosody", "config" = "/etc/prosody" }
    }
    "ergo-irc" = {
      command        = null
      container_port = 6667
      cpu_millicores = 250
      health_command = ["nc", "-z", "127.0.0.1", "{port}"]
      health_path    = "/healthz"
      image          = "ghcr.io/ergochat/ergo:v2.13.1"
      memory_bytes   = 268435456
      metrics_path   = null
      port           = 9400
      release        = "d7074bd5aada"
      replicas       = 1
      servers        = "atl-chat"
      standby_port   = 9450
      tcp_ports      = [6667, 6697]
      volumes        = { "data" = "/ircd" }
    }
    "matterbridge" = {
      command        = null
      container_port = null
      cpu_millicores = 250
      health_command = null
      health_path    = "/healthz"
      image          = "42wim/matterbridge:1.26.0"
      memory_bytes   = 268435456
      metrics_path   = null
      port           = 9500
      release        = "ece5537ea6e7"
      replicas       = 1
      servers        = "atl-chat"
      standby_port   = 9550
      tcp_ports      = []
      volumes        = { "config" = "/etc/matterbridge" }
    }
    "elasticsearch" = {
      command        = ["elasticsearch", "-Ediscovery.type=single-node"]
      container_port = 9200
      cpu_millicores = 1000
      health_command = null
      health_path    = "/_cluster/health"
      image          = "docker.elastic.co/elasticsearch/elasticsearch:7.10.2"
      memory_bytes   = 2147483648
      metrics_path   = null
      port           = 9800
      release        = "0160c1e143af"
      replicas       = 1
      servers        = "atl-wiki"
      standby_port   = 9850
      tcp_ports      = []
      volumes        = { "data" = "/usr/share/elasticsearch/data" }
    }
    "postgresql" = {
      command        = null
      container_port = 5432
      cpu_millicores = 500
      health_command = ["pg_isready", "-h", "127.0.0.1", "-p", "{port}", "-U", "postgres"]
      health_path    = "/healthz"
      image          = "postgres:16.3"
      memory_bytes   = 1073741824
      metrics_path   = null
      port           = 9900
      release        = "419957f7cb58"
      replicas       = 1
      servers        = "database-cluster"
      standby_port   = 9950
      tcp_ports      = []
      volumes        = { "data" = "/var/lib/postgresql/data" }
    }
    "redis" = {
      command        = null
      container_port = 6379
      cpu_millicores = 250
      health_command = ["redis-cli", "-p", "{port}", "ping"]
      health_path    = "/healthz"
      image          = "redis:7.2.5"
      memory_bytes   = 268435456
      metrics_path   = null
      port           = 10000
      release        = "e9c979dccf98"
      replicas       = 1
      servers        = "database-cluster"
      standby_port   = 10050
      tcp_ports      = []
      volumes        = { "data" = "/data" }
    }
  }

  domains = {
    "auth.atl.services" = {
      cpu_millicores = 500
      memory_bytes   = 1073741824
      monitoring     = true
      replicas       = 1
      service        = "authentik"
      ssl            = true
      url            = "https://auth.atl.services/"
    }
    "metrics.atl.services" = {
      cpu_millicores = 250
      memory_bytes   = 536870912
      monitoring     = true
      replicas       = 1
      service        = "grafana"
      ssl            = true
      url            = "https://metrics.atl.services/"
    }
    "atl.chat" = {
      cpu_millicores = 250
      memory_bytes   = 268435456
      monitoring     = true
      replicas       = 1
      service        = "element-web"
      ssl            = true
      url            = "https://atl.chat/"
    }
    "atl.wiki" = {
      cpu_millicores = 500
      memory_bytes   = 536870912
      monitoring     = true
      replicas       = 1
      service        = "mediawiki"
      ssl            = true
      url            = "https://atl.wiki/"
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
