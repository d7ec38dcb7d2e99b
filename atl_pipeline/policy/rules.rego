# The policies every project gets. Each rule adds to `deny` one object:
#   policy:  its name (what `policy.exceptions` in domains.yml lists)
#   message: what is wrong and what to do
#   path:    where in domains.yml it comes from (keys and list indexes), when it does
#   domain:  the domain it is about, when it is one (an exception may name it)
# input.config is domains.yml as the pipeline read it (defaults filled in);
# input.plan.resource_changes lists each change of Terraform's plan (`terraform show -json`) as
# {address, type, name, actions, after}; input.plan is null when nothing was planned.
# A project's own rules go in policies/*.rego beside domains.yml, in this same package.
package atl.policy

production if input.config.environment == "production"

serving(domain) if {
	domain.enabled
	not domain.external
}

deny contains finding if {
	production
	some i, domain in input.config.domains
	serving(domain)
	not domain.ssl
	finding := {
		"policy": "production_ssl", "domain": domain.name, "path": ["domains", i, "ssl"],
		"message": sprintf("production domain %s is served without TLS: set ssl: true", [domain.name]),
	}
}

deny contains finding if {
	production
	some i, domain in input.config.domains
	serving(domain)
	not domain.monitoring
	finding := {
		"policy": "production_monitoring", "domain": domain.name, "path": ["domains", i, "monitoring"],
		"message": sprintf("production domain %s is not monitored: set monitoring: true", [domain.name]),
	}
}

deny contains finding if {
	production
	some i, domain in input.config.domains
	serving(domain)
	domain.replicas < 2
	finding := {
		"policy": "production_replicas", "domain": domain.name, "path": ["domains", i, "replicas"],
		"message": sprintf("production domain %s runs %d replica: one restart takes it down; set replicas: 2 or more",
			[domain.name, domain.replicas]),
	}
}

deny contains finding if {
	some name, service in input.config.services
	service.autoscale.min < 2
	production
	finding := {
		"policy": "production_replicas", "path": ["services", name, "autoscale", "min"],
		"message": sprintf("service %s may scale down to %d replica in production: set autoscale.min: 2 or more",
			[name, service.autoscale.min]),
	}
}

world := {"0.0.0.0/0", "::/0"}

deny contains finding if {
	some i, network in input.config.target.ssh_from
	network in world
	finding := {
		"policy": "ssh_not_world", "path": ["target", "ssh_from", i],
		"message": sprintf("SSH is open to the whole internet (%s): list the operators' own ranges in ssh_from",
			[network]),
	}
}

# a firewall rule in the plan that opens the servers' SSH port to everyone, whatever rendered it
deny contains finding if {
	some change in input.plan.resource_changes
	change.type == "hcloud_firewall"
	some rule in change.after.rule
	rule.port == sprintf("%d", [input.config.target.ssh_port])
	some network in rule.source_ips
	network in world
	finding := {
		"policy": "ssh_not_world", "path": ["target", "ssh_from"],
		"message": sprintf("the plan opens SSH to the whole internet (%s, %s)", [change.address, network]),
	}
}

# a secret written into a command, where it ends up in the rendered Terraform and its state
secret_word := `(password|passwd|secret|token|api[_-]?key|private[_-]?key)` # matched in lower case

deny contains finding if {
	some name, service in input.config.services
	some j, argument in service.command
	regex.match(sprintf(`^-*[a-z0-9_.-]*%s[a-z0-9_.-]*=.+`, [secret_word]), lower(argument))
	finding := plaintext_secret(name, j)
}

deny contains finding if {
	some name, service in input.config.services
	some j, argument in service.command
	j > 0
	flag := lower(service.command[j - 1])
	regex.match(sprintf(`^--?[a-z0-9_.-]*%s[a-z0-9_.-]*$`, [secret_word]), flag)
	not regex.match(`(file|path|env)$`, flag) # --password-file /run/secrets/db names where it is
	not regex.match(`^[-/$]`, argument)
	finding := plaintext_secret(name, j)
}

plaintext_secret(name, j) := {
	"policy": "plaintext_secret", "path": ["services", name, "command", j],
	"message": sprintf("service %s has a secret written in its command, and so in the rendered Terraform and its state: pass it in the environment instead", [name]),
}
