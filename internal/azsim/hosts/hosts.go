// Package hosts names the simulated cloud's hosts: the server routes by
// them, the resource providers' verbs print them, and clients dial them.
package hosts

import "strings"

// The simulated cloud's names. Vault v is https://v.<VaultDNSSuffix>; its
// challenge resource is VaultResource, a suffix of every vault host, so the
// SDK's challenge-resource check passes without being switched off.
const (
	VaultDNSSuffix = "vault.azsim.test"
	VaultResource  = "https://vault.azsim.test"
	LoginHost      = "login.azsim.test"
	LoginURL       = "https://" + LoginHost
	ManagementHost = "management.azsim.test"
	// EventGridSuffix is the Event Grid namespaces' host suffix: namespace
	// n is https://n.<EventGridSuffix>.
	EventGridSuffix = "eventgrid.azsim.test"
	// HostSuffix is what every azsim host name ends with; clients route
	// every such name to azsim's listener.
	HostSuffix = "azsim.test"
)

// VaultURL is the URL of vault name.
func VaultURL(name string) string { return "https://" + strings.ToLower(name) + "." + VaultDNSSuffix }
