package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
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
	c, err := decodeEnvFile(data)
	if err != nil {
		return Cloud{}, &Error{Field: "cloudEnvFileName", Msg: fmt.Sprintf("cloud environment file %s: %v", path, err)}
	}
	return c, nil
}

// dnsSuffixRE is a DNS name, with a port for local clouds.
var dnsSuffixRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*(:[0-9]{1,5})?$`)

// decodeEnvFile reads an environment file's JSON. Its values become the
// URLs the provider sends credentials to, so each must be what it claims:
// an absolute http(s) URL, and a DNS suffix that makes a vault's host and
// nothing else (upstream takes any string).
func decodeEnvFile(data []byte) (Cloud, error) {
	var e envFile
	if err := json.Unmarshal(data, &e); err != nil {
		return Cloud{}, fmt.Errorf("not valid JSON: %w", err)
	}
	if e.ActiveDirectoryEndpoint == "" || e.KeyVaultEndpoint == "" || e.KeyVaultDNSSuffix == "" {
		return Cloud{}, errors.New("must set activeDirectoryEndpoint, keyVaultEndpoint and keyVaultDNSSuffix")
	}
	for _, f := range []struct{ name, v string }{{"activeDirectoryEndpoint", e.ActiveDirectoryEndpoint}, {"keyVaultEndpoint", e.KeyVaultEndpoint}} {
		if u, err := url.Parse(f.v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return Cloud{}, fmt.Errorf("%s %q is not an http(s) URL such as https://login.example.com/", f.name, f.v)
		}
	}
	suffix := strings.Trim(e.KeyVaultDNSSuffix, ".")
	if len(suffix) > 253 || !dnsSuffixRE.MatchString(suffix) {
		return Cloud{}, fmt.Errorf("keyVaultDNSSuffix %q is not a DNS name such as vault.local.azurestack.external", e.KeyVaultDNSSuffix)
	}
	return Cloud{Name: "AzureStackCloud", AuthorityHost: strings.TrimSuffix(e.ActiveDirectoryEndpoint, "/") + "/",
		KeyVaultResource: strings.TrimSuffix(e.KeyVaultEndpoint, "/"), KeyVaultDNSSuffix: suffix}, nil
}

// VaultURL is the URL of a vault in this cloud.
func (c Cloud) VaultURL(vault string) string {
	return "https://" + strings.ToLower(vault) + "." + c.KeyVaultDNSSuffix
}
