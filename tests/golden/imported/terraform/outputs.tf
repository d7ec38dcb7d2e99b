# Rendered by atl-pipeline from domains.yml. Edit terraform_templates/hcloud/, not this file.

output "services" {
  description = "Each service in use: image, release, replicas and resources."
  value = { for name, service in local.services : name => merge(service, {
    ports         = [for r in range(service.replicas) : service.port + r]
    standby_ports = [for r in range(service.replicas) : service.standby_port + r]
  }) }
}

output "domains" {
  description = "Each domain: its service, URL, TLS, monitoring, and whether Cloudflare proxies it."
  value       = { for name, domain in local.domains : name => merge(domain, { proxied = local.records[name].proxied }) }
}

output "servers" {
  description = "Each server: its public and private addresses, for the deployment over SSH."
  value = { for name, server in hcloud_server.node : name => {
    ipv4       = server.ipv4_address
    private_ip = one(server.network[*].ip)
    group      = server.labels.group
  } }
}

output "load_balancer" {
  description = "The load balancer's public addresses, where the DNS records point, and its private one."
  value = {
    ipv4       = hcloud_load_balancer.main.ipv4
    ipv6       = hcloud_load_balancer.main.ipv6
    private_ip = hcloud_load_balancer_network.main.ip
  }
}
