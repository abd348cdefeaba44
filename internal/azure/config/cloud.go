package config

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Cloud is what the provider needs to know of an Azure cloud.
type Cloud struct {
	Name string
	// AuthorityHost is the Entra ID (AAD) endpoint, with a trailing slash.
	AuthorityHost string
	// KeyVaultResource is the audience of Key Vault tokens, without a
	// trailing slash; KeyVaultDNSSuffix builds vault URLs.
	KeyVaultResource  string
	KeyVaultDNSSuffix string
}

// clouds are the well-known clouds, by lower-cased name and alias, with the
// values go-autorest's environment tables give.
var clouds = map[string]Cloud{
	"azurepubliccloud":       {"AzurePublicCloud", "https://login.microsoftonline.com/", "https://vault.azure.net", "vault.azure.net"},
	"azurecloud":             {"AzurePublicCloud", "https://login.microsoftonline.com/", "https://vault.azure.net", "vault.azure.net"},
	"azurechinacloud":        {"AzureChinaCloud", "https://login.chinacloudapi.cn/", "https://vault.azure.cn", "vault.azure.cn"},
	"azureusgovernmentcloud": {"AzureUSGovernmentCloud", "https://login.microsoftonline.us/", "https://vault.usgovcloudapi.net", "vault.usgovcloudapi.net"},
	"azureusgovernment":      {"AzureUSGovernmentCloud", "https://login.microsoftonline.us/", "https://vault.usgovcloudapi.net", "vault.usgovcloudapi.net"},
	"azuregermancloud":       {"AzureGermanCloud", "https://login.microsoftonline.de/", "https://vault.microsoftazure.de", "vault.microsoftazure.de"},
}

// CloudByName resolves cloudName: a well-known cloud (case-insensitive, as
// upstream), or AzureStackCloud read from envFile, the JSON environment
// file upstream reads from AZURE_ENVIRONMENT_FILEPATH. The file is read per
// call, never through a process-wide environment variable, so concurrent
// mounts with different files cannot race.
func CloudByName(name, envFile string) (Cloud, error) {
	if strings.EqualFold(name, "AzureStackCloud") {
		return cloudFromFile(envFile)
	}
	c, ok := clouds[strings.ToLower(name)]
	if !ok {
		return Cloud{}, &Error{Field: "cloudName", Msg: fmt.Sprintf("cloudName %q is not a known cloud: use AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud, AzureGermanCloud, or AzureStackCloud with cloudEnvFileName", name)}
	}
	return c, nil
}

// envFile is the JSON shape of an AzureStackCloud environment file.
type envFile struct {
	Name                    string `json:"name"`
	ActiveDirectoryEndpoint string `json:"activeDirectoryEndpoint"`
	KeyVaultEndpoint        string `json:"keyVaultEndpoint"`
	KeyVaultDNSSuffix       string `json:"keyVaultDNSSuffix"`
}

func cloudFromFile(path string) (Cloud, error) {
	if path == "" {
		return Cloud{}, &Error{Field: "cloudEnvFileName", Msg: "cloudName AzureStackCloud needs cloudEnvFileName (or the provider's --cloud-env-file): the path of a JSON file with activeDirectoryEndpoint, keyVaultEndpoint and keyVaultDNSSuffix"}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Cloud{}, &Error{Field: "cloudEnvFileName", Msg: fmt.Sprintf("read cloud environment file %s: %v; mount it into the provider's pod", path, err)}
	}
	var e envFile
	if err := json.Unmarshal(data, &e); err != nil {
		return Cloud{}, &Error{Field: "cloudEnvFileName", Msg: fmt.Sprintf("cloud environment file %s is not valid JSON: %v", path, err)}
	}
	if e.ActiveDirectoryEndpoint == "" || e.KeyVaultEndpoint == "" || e.KeyVaultDNSSuffix == "" {
		return Cloud{}, &Error{Field: "cloudEnvFileName", Msg: fmt.Sprintf("cloud environment file %s must set activeDirectoryEndpoint, keyVaultEndpoint and keyVaultDNSSuffix", path)}
	}
	return Cloud{Name: "AzureStackCloud", AuthorityHost: strings.TrimSuffix(e.ActiveDirectoryEndpoint, "/") + "/",
		KeyVaultResource: strings.TrimSuffix(e.KeyVaultEndpoint, "/"), KeyVaultDNSSuffix: strings.Trim(e.KeyVaultDNSSuffix, ".")}, nil
}

// VaultURL is the URL of a vault in this cloud.
func (c Cloud) VaultURL(vault string) string {
	return "https://" + strings.ToLower(vault) + "." + c.KeyVaultDNSSuffix
}
