package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// kind is how a flag's value becomes a JSON argument.
type kind int

const (
	str         kind = iota
	list             // one or more values until the next flag
	integer          //
	boolean          // bare flag, or followed by true/false
	fileText         // a path whose content is sent as text
	fileCert         // a path: PEM sent as text, anything else base64
	jsonValue        // JSON text, or @path to a JSON file
	ignored          // accepted for compatibility with az, not used
	ignoredBool      // a bare flag accepted and not used
)

// flagSpec maps CLI spellings to an argument field.
type flagSpec struct {
	names []string
	field string
	kind  kind
}

func f(names, field string, k kind) flagSpec {
	return flagSpec{names: strings.Split(names, ","), field: field, kind: k}
}

var (
	rg       = f("--resource-group,-g", "resourceGroup", str)
	name     = f("--name,-n", "name", str)
	location = f("--location,-l", "location", str)
	vault    = f("--vault-name", "vaultName", str)
	subIgn   = f("--subscription", "", ignored)
)

// commands lists every az-shaped verb azsim accepts, with its flags. The
// verb names are the admin API's.
var commands = map[string][]flagSpec{
	"account show":    {subIgn},
	"identity create": {rg, name, location, subIgn},
	"identity show":   {rg, name, subIgn},
	"identity federated-credential create": {name, rg, f("--identity-name", "identityName", str), f("--issuer", "issuer", str),
		f("--subject", "subject", str), f("--audiences", "audiences", list), subIgn},
	"identity federated-credential delete": {name, rg, f("--identity-name", "identityName", str), f("--yes,-y", "", ignoredBool), subIgn},
	"ad sp create-for-rbac":                {name, f("--skip-assignment", "", ignoredBool), f("--role", "", ignored), f("--scopes", "", ignored)},
	"ad app federated-credential create":   {f("--id", "appId", str), f("--parameters", "", jsonValue)},
	"vm create":                            {rg, name, location, f("--assign-identity", "assignIdentity", boolean), f("--image", "", ignored), f("--generate-ssh-keys", "", ignoredBool)},
	"vmss create":                          {rg, name, location, f("--instance-count", "instanceCount", integer), f("--assign-identity", "assignIdentity", boolean), f("--image", "", ignored), f("--generate-ssh-keys", "", ignoredBool)},
	"vm identity assign":                   {rg, name, f("--identities", "identities", list)},
	"vmss identity assign":                 {rg, name, f("--identities", "identities", list)},
	"vm identity show":                     {rg, name},
	"vmss identity show":                   {rg, name},
	"vmss list":                            {rg},
	"vmss list-instances":                  {rg, name},
	"aks create": {rg, name, location, f("--node-count,-c", "nodeCount", integer), f("--enable-addons,-a", "enableAddons", str),
		f("--oidc-issuer-url", "oidcIssuerUrl", str), f("--enable-managed-identity", "", ignoredBool), f("--generate-ssh-keys", "", ignoredBool),
		f("--enable-oidc-issuer", "", ignoredBool), f("--enable-workload-identity", "", ignoredBool), f("--network-plugin", "", ignored)},
	"aks show": {rg, name},
	"aks pod-identity add": {rg, f("--cluster-name", "clusterName", str), f("--namespace", "namespace", str), name,
		f("--identity-resource-id", "identityResourceId", str), f("--binding-selector", "bindingSelector", str)},
	"aks identity-binding create": {rg, f("--cluster-name", "clusterName", str), name, f("--managed-identity-resource-id", "managedIdentityResourceId", str)},
	"aks identity-binding show":   {rg, f("--cluster-name", "clusterName", str), name},
	"aks identity-binding list":   {rg, f("--cluster-name", "clusterName", str)},
	"aks identity-binding delete": {rg, f("--cluster-name", "clusterName", str), name, f("--yes,-y", "", ignoredBool)},
	"keyvault create":             {rg, name, location, f("--enable-rbac-authorization", "enableRbacAuthorization", boolean), f("--sku", "", ignored)},
	"keyvault show":               {rg, name},
	"keyvault set-policy": {rg, name, f("--spn", "spn", str), f("--object-id", "objectId", str),
		f("--secret-permissions", "secretPermissions", list), f("--key-permissions", "keyPermissions", list),
		f("--certificate-permissions", "certificatePermissions", list)},
	"role assignment create": {f("--assignee,--assignee-object-id", "assignee", str), f("--role", "role", str), f("--scope", "scope", str),
		f("--assignee-principal-type", "", ignored)},
	"keyvault secret set": {vault, name, f("--value", "value", str), f("--file,-f", "value", fileText), f("--content-type", "contentType", str),
		f("--disabled", "disabled", boolean), f("--expires", "expires", str), f("--not-before", "notBefore", str), f("--encoding", "", ignored)},
	"keyvault secret show":           {vault, name, f("--version", "version", str)},
	"keyvault secret list":           {vault, f("--maxresults", "", ignored), f("--include-managed", "", ignored)},
	"keyvault secret set-attributes": {vault, name, f("--version", "version", str), f("--enabled", "enabled", boolean)},
	"keyvault key create":            {vault, name, f("--kty", "kty", str), f("--size", "size", integer), f("--curve", "curve", str), f("--ops", "ops", list), f("--protection", "", ignored)},
	"keyvault key import":            {vault, name, f("--pem-file", "pem", fileText), f("--ops", "ops", list), f("--protection", "", ignored)},
	"keyvault certificate import":    {vault, name, f("--file,-f", "file", fileCert), f("--password", "password", str), f("--policy,-p", "policy", jsonValue)},
	"keyvault certificate create":    {vault, name, f("--policy,-p", "policy", jsonValue)},
	"token stats":                    {},
	"eventgrid system-topic create":  {rg, name, location, f("--topic-type", "topicType", str), f("--source", "source", str), subIgn},
	"eventgrid system-topic show":    {rg, name, subIgn},
	"eventgrid system-topic delete":  {rg, name, f("--yes,-y", "", ignoredBool), subIgn},
	"eventgrid system-topic event-subscription create": {rg, f("--system-topic-name", "systemTopicName", str), name,
		f("--endpoint", "endpoint", str), f("--endpoint-type", "endpointType", str), f("--included-event-types", "includedEventTypes", list),
		f("--subject-begins-with", "subjectBeginsWith", str), f("--subject-ends-with", "subjectEndsWith", str),
		f("--subject-case-sensitive", "subjectCaseSensitive", boolean), f("--event-delivery-schema", "eventDeliverySchema", str),
		f("--max-delivery-attempts", "maxDeliveryAttempts", integer), f("--event-ttl", "eventTtl", integer),
		f("--azure-active-directory-tenant-id", "azureActiveDirectoryTenantId", str),
		f("--azure-active-directory-application-id-or-uri", "azureActiveDirectoryApplicationIdOrUri", str), subIgn},
	"eventgrid system-topic event-subscription show":   {rg, f("--system-topic-name", "systemTopicName", str), name, subIgn},
	"eventgrid system-topic event-subscription list":   {rg, f("--system-topic-name", "systemTopicName", str), subIgn},
	"eventgrid system-topic event-subscription delete": {rg, f("--system-topic-name", "systemTopicName", str), name, f("--yes,-y", "", ignoredBool), subIgn},
	"eventgrid namespace create":                       {rg, name, location, f("--sku", "", ignored), subIgn},
	"eventgrid namespace show":                         {rg, name, subIgn},
	"eventgrid namespace topic create":                 {rg, f("--namespace-name", "namespaceName", str), name, subIgn},
	"eventgrid namespace topic event-subscription create": {rg, f("--namespace-name", "namespaceName", str), f("--topic-name", "topicName", str), name,
		f("--receive-lock-duration", "receiveLockDuration", integer), f("--max-delivery-count", "maxDeliveryCount", integer),
		f("--included-event-types", "includedEventTypes", list), subIgn},
	"eventgrid stats": {},
	"keyvault stats":  {name, f("--reset", "reset", boolean)},
}

// parseArgs turns the flags after a verb into the admin API's JSON
// arguments, plus the output format and query.
func parseArgs(verb string, args []string) (map[string]any, outputOpts, error) {
	specs := commands[verb]
	out := map[string]any{}
	var o outputOpts
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch a {
		case "-o", "--output":
			if i+1 >= len(args) {
				return nil, o, fmt.Errorf("argument --output/-o: expected one argument")
			}
			o.format, i = args[i+1], i+1
			continue
		case "--query":
			if i+1 >= len(args) {
				return nil, o, fmt.Errorf("argument --query: expected one argument")
			}
			o.query, i = args[i+1], i+1
			continue
		case "--only-show-errors", "--verbose", "--debug", "-y", "--yes":
			continue
		}
		flag, value, hasValue := strings.Cut(a, "=")
		spec, ok := lookup(specs, flag)
		if !ok {
			return nil, o, fmt.Errorf("unrecognized arguments: %s", a)
		}
		vals := []string{}
		if hasValue {
			vals = append(vals, value)
		}
		for !hasValue && i+1 < len(args) && !isFlag(args[i+1]) {
			vals, i = append(vals, args[i+1]), i+1
			if spec.kind != list {
				break
			}
		}
		if err := setArg(out, spec, flag, vals); err != nil {
			return nil, o, err
		}
	}
	if err := exclusive(verb, args); err != nil {
		return nil, o, err
	}
	return out, o, nil
}

// exclusive refuses what az refuses before calling the service: `secret
// set` takes exactly one of --value and --file.
func exclusive(verb string, args []string) error {
	if verb != "keyvault secret set" {
		return nil
	}
	n := 0
	for _, a := range args {
		flag, _, _ := strings.Cut(a, "=")
		if flag == "--value" || flag == "--file" || flag == "-f" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("usage error: --value VALUE | --file PATH")
	}
	return nil
}

// isFlag tells a flag from a value; negative numbers are values.
func isFlag(s string) bool {
	if !strings.HasPrefix(s, "-") || len(s) < 2 {
		return false
	}
	_, err := strconv.Atoi(s)
	return err != nil
}

func lookup(specs []flagSpec, flag string) (flagSpec, bool) {
	for _, s := range specs {
		for _, n := range s.names {
			if n == flag {
				return s, true
			}
		}
	}
	return flagSpec{}, false
}

func setArg(out map[string]any, spec flagSpec, flag string, vals []string) error {
	need := func() (string, error) {
		if len(vals) == 0 {
			return "", fmt.Errorf("argument %s: expected one argument", flag)
		}
		return vals[0], nil
	}
	switch spec.kind {
	case ignored, ignoredBool:
		return nil
	case list:
		if len(vals) == 0 {
			return fmt.Errorf("argument %s: expected at least one argument", flag)
		}
		out[spec.field] = vals
	case boolean:
		b := true
		if len(vals) > 0 {
			var err error
			if b, err = strconv.ParseBool(vals[0]); err != nil {
				return fmt.Errorf("argument %s: invalid boolean %q", flag, vals[0])
			}
		}
		out[spec.field] = b
	case integer:
		v, err := need()
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("argument %s: invalid int value: '%s'", flag, v)
		}
		out[spec.field] = n
	default:
		v, err := need()
		if err != nil {
			return err
		}
		return setValue(out, spec, flag, v)
	}
	return nil
}

func setValue(out map[string]any, spec flagSpec, flag, v string) error {
	switch spec.kind {
	case fileText, fileCert:
		b, err := os.ReadFile(v)
		if err != nil {
			return fmt.Errorf("argument %s: %w", flag, err)
		}
		if spec.kind == fileCert && !strings.HasPrefix(strings.TrimSpace(string(b)), "-----BEGIN") {
			out[spec.field] = base64.StdEncoding.EncodeToString(b)
			return nil
		}
		out[spec.field] = string(b)
	case jsonValue:
		text := v
		if path, ok := strings.CutPrefix(v, "@"); ok {
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("argument %s: %w", flag, err)
			}
			text = string(b)
		}
		var j any
		if err := json.Unmarshal([]byte(text), &j); err != nil {
			return fmt.Errorf("argument %s: not valid JSON: %w", flag, err)
		}
		if spec.field == "" { // --parameters: its fields are the arguments
			m, ok := j.(map[string]any)
			if !ok {
				return fmt.Errorf("argument %s: expected a JSON object", flag)
			}
			for k, x := range m {
				out[k] = x
			}
			return nil
		}
		out[spec.field] = j
	default:
		out[spec.field] = v
	}
	return nil
}

// outputOpts are the global -o and --query.
type outputOpts struct {
	format, query string
}

// defaultPolicy is what `az keyvault certificate get-default-policy` prints.
var defaultPolicy = map[string]any{
	"issuerParameters": map[string]any{"certificateTransparency": nil, "name": "Self"},
	"keyProperties":    map[string]any{"curve": nil, "exportable": true, "keySize": 2048, "keyType": "RSA", "reuseKey": true},
	"lifetimeActions":  []any{map[string]any{"action": map[string]any{"actionType": "AutoRenew"}, "trigger": map[string]any{"daysBeforeExpiry": 90}}},
	"secretProperties": map[string]any{"contentType": "application/x-pkcs12"},
	"x509CertificateProperties": map[string]any{"keyUsage": []any{"cRLSign", "dataEncipherment", "digitalSignature", "keyEncipherment", "keyAgreement", "keyCertSign"},
		"subject": "CN=CLIGetDefaultPolicy", "validityInMonths": 12},
}
