package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"kvmount.dev/kvmount/internal/atomicdir"
	"kvmount.dev/kvmount/internal/refresh"
)

// Object kinds.
const (
	TypeSecret = "secret"
	TypeKey    = "key"
	TypeCert   = "cert"
)

// Encodings of a secret's value.
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
	EncodingHex    = "hex"
)

// Formats of a certificate-backed secret.
const (
	FormatPEM = "pem"
	FormatPFX = "pfx"
)

// Object is one entry of the objects array.
type Object struct {
	Name    string
	Type    string // TypeSecret, TypeKey or TypeCert
	Version string // "" is the latest ("latest" is read as "")
	// File is the file name: objectAlias, else objectName.
	File     string
	Encoding string // EncodingUTF8, EncodingBase64 or EncodingHex
	Format   string // FormatPEM or FormatPFX
	// History > 1 mounts the History newest enabled versions as
	// File/0 … File/History-1.
	History int
	Mode    os.FileMode
	// Optional objects that do not exist (or are disabled) leave their
	// files out instead of failing the mount; OptionalWhenForbidden also
	// when the identity may not read them.
	Optional, OptionalWhenForbidden bool
	// Vault and Tenant are the object's own key vault and its tenant; ""
	// is the class's.
	Vault, Tenant string
	// JSONFields are fields of a JSON-valued secret, each also written
	// to its own file.
	JSONFields []JSONField
}

// JSONField is one field of a JSON secret written to a file of its own.
type JSONField struct {
	// Path is the field: keys separated by dots, [n] for array
	// elements, a backslash before a literal dot or bracket.
	Path string
	File string
	Mode os.FileMode
}

// ID is the object's ID in the driver's status and rotation: type/name, as
// upstream reports it.
func (o Object) ID() string { return o.Type + "/" + o.Name }

// rawObject is one entry as written in YAML, with upstream's field names.
// YAML 1.2, as upstream reads it: objectName: off stays the string "off",
// and an unquoted filePermission: 0600 stays the text "0600".
type rawObject struct {
	ObjectName           string `yaml:"objectName"`
	ObjectType           string `yaml:"objectType"`
	ObjectVersion        string `yaml:"objectVersion"`
	ObjectAlias          string `yaml:"objectAlias"`
	ObjectEncoding       string `yaml:"objectEncoding"`
	ObjectFormat         string `yaml:"objectFormat"`
	ObjectVersionHistory int32  `yaml:"objectVersionHistory"`
	FilePermission       string `yaml:"filePermission"`
	// kvmount's, opt-in (docs/objects.md).
	Optional              string         `yaml:"optional"`
	OptionalWhenForbidden string         `yaml:"optionalWhenForbidden"`
	KeyvaultName          string         `yaml:"keyvaultName"`
	TenantID              string         `yaml:"tenantId"`
	JSONFields            []rawJSONField `yaml:"jsonFields"`
}

type rawJSONField struct {
	Path           string `yaml:"path"`
	ObjectAlias    string `yaml:"objectAlias"`
	FilePermission string `yaml:"filePermission"`
}

// objectFields are the known fields of an objects entry, in the order
// error messages list them: upstream's, then kvmount's.
var objectFields = []string{"objectName", "objectType", "objectVersion", "objectAlias", "objectEncoding", "objectFormat", "objectVersionHistory", "filePermission",
	"optional", "optionalWhenForbidden", "keyvaultName", "tenantId", "jsonFields"}

// decodeYAML decodes one YAML document into v, as upstream's yaml.v3 does
// (unknown fields ignored), and returns the document's top-level keys
// that are not in known, so that they can be reported.
func decodeYAML(text string, v any, known []string) ([]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, err
	}
	var unknown []string
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		m := doc.Content[0].Content
		for i := 0; i+1 < len(m); i += 2 {
			if !slices.Contains(known, m[i].Value) {
				unknown = append(unknown, m[i].Value)
			}
		}
	}
	if err := doc.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return unknown, nil
}

// unknownFieldWarning explains a field upstream ignores: most are typos.
func unknownFieldWarning(object, field string, known []string) Warning {
	msg := fmt.Sprintf("unknown field %q is ignored (as upstream ignores it)", field)
	if near := Nearest(field, known); near != "" {
		msg += fmt.Sprintf(": did you mean %s?", near)
	} else {
		msg += ": the fields are " + strings.Join(known, ", ")
	}
	return Warning{Object: object, Msg: msg}
}

// Nearest is the known field closest to a misspelt one (at most two edits
// away, or equal but for case), or "".
func Nearest(field string, known []string) string {
	best, dist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, field) {
			return k
		}
		if d := editDistance(strings.ToLower(field), strings.ToLower(k)); d < dist {
			best, dist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func (c *Config) parseObjects(a, _ map[string]string, _ Defaults) error {
	text := a["objects"]
	if text == "" {
		return &Error{Field: "objects", Msg: "objects is not set: list the objects to mount under objects: | array: [ - | objectName: … ]"}
	}
	if len(text) > maxObjectsText {
		return &Error{Field: "objects", Msg: fmt.Sprintf("objects is %d bytes; the limit is %d: split the class", len(text), maxObjectsText)}
	}
	var arr struct {
		Array []string `yaml:"array"`
	}
	unknown, err := decodeYAML(text, &arr, []string{"array"})
	if err != nil {
		return &Error{Field: "objects", Msg: fmt.Sprintf("objects is not a YAML mapping with an array of strings (%v); write it as objects: |, then array:, then one '- |' block per object", err)}
	}
	if len(arr.Array) == 0 && len(unknown) > 0 {
		// Upstream mounts nothing here and its driver then fails: a
		// class that names no object is a mistake, said plainly.
		return &Error{Field: "objects", Msg: fmt.Sprintf("objects has no array (found %s); write it as objects: |, then array:, then one '- |' block per object", strings.Join(unknown, ", "))}
	}
	for _, k := range unknown {
		c.warn(unknownFieldWarning("", k, []string{"array"}))
	}
	if len(arr.Array) == 0 {
		// Upstream answers such a mount with no files; so does kvmount,
		// but the pod is told, as an empty volume is rarely meant.
		c.warn(Warning{Msg: "objects has an empty array: the volume is mounted with no files; list the objects to mount under array:"})
	}
	if len(arr.Array) > maxObjects {
		return &Error{Field: "objects", Msg: fmt.Sprintf("%d objects; the limit is %d per class", len(arr.Array), maxObjects)}
	}
	var errs Errors
	for i, entry := range arr.Array {
		o, err := c.parseObject(i, entry)
		errs = errs.add(err)
		if len(errs) == 0 {
			c.Objects = append(c.Objects, o)
		}
	}
	if len(errs) > 0 {
		// Which files collide is only known once every object parses.
		c.Objects = nil
		return errs.err()
	}
	return c.checkFiles()
}

// checkFiles refuses a class whose objects' files cannot all exist (a file
// that is also another's directory: objectAlias a and a/b, a
// version-history directory and an alias of the same name), and warns of
// a file written by two objects: upstream mounts the last one's, and so
// does kvmount.
func (c *Config) checkFiles() error {
	owner := map[string]int{}
	var paths []string
	for i, o := range c.Objects {
		for _, f := range o.Files() {
			if prev, dup := owner[f]; dup {
				c.warn(Warning{Object: c.objectRef(i), Msg: fmt.Sprintf("file %q is also written by objects[%d] (%s); this object's is mounted, as upstream does: give one of them a different objectAlias", f, prev, c.Objects[prev].ID())})
			} else {
				paths = append(paths, f)
			}
			owner[f] = i
		}
	}
	var pc *atomicdir.PathConflictError
	if err := atomicdir.CheckPaths(paths); errors.As(err, &pc) {
		dir := owner[pc.Path]
		return &Error{Field: "objects", Object: c.objectRef(owner[pc.Under]), Msg: fmt.Sprintf("writes %q, but objects[%d] (%s) writes the file %q, so it cannot also be a directory: give one of them a different objectAlias", pc.Under, dir, c.Objects[dir].ID(), pc.Path)}
	}
	return nil
}

// objectRef names objects[i] in messages: its index and name.
func (c *Config) objectRef(i int) string {
	return fmt.Sprintf("%d %s", i, c.Objects[i].Name)
}

func (c *Config) parseObject(i int, entry string) (Object, error) {
	idx := strconv.Itoa(i)
	var r rawObject
	unknown, err := decodeYAML(entry, &r, objectFields)
	if err != nil {
		return Object{}, &Error{Field: "objects", Object: idx, Msg: fmt.Sprintf("%v; the fields are %s", err, strings.Join(objectFields, ", "))}
	}
	trim(&r)
	for _, f := range unknown {
		c.warn(unknownFieldWarning(fmt.Sprintf("%s %s", idx, r.ObjectName), f, objectFields))
	}
	o := Object{Name: r.ObjectName, Type: strings.ToLower(r.ObjectType), Version: r.ObjectVersion, File: r.ObjectAlias,
		Encoding: strings.ToLower(r.ObjectEncoding), Format: strings.ToLower(r.ObjectFormat), History: int(r.ObjectVersionHistory)}
	errorf := func(format string, args ...any) error {
		return &Error{Field: "objects", Object: fmt.Sprintf("%s %s", idx, r.ObjectName), Msg: fmt.Sprintf(format, args...)}
	}
	if !objectNameRE.MatchString(o.Name) {
		return o, errorf("objectName %q is not a Key Vault object name (1-127 letters, digits and hyphens)", o.Name)
	}
	if o.Type != TypeSecret && o.Type != TypeKey && o.Type != TypeCert {
		return o, errorf("objectType %q is not one of secret, key, cert", r.ObjectType)
	}
	if strings.EqualFold(o.Version, "latest") {
		o.Version = ""
	}
	if o.Version != "" && !versionRE.MatchString(o.Version) {
		return o, errorf("objectVersion %q is not a Key Vault version (32 hex digits) or empty for the latest", o.Version)
	}
	if o.File == "" {
		o.File = o.Name
	}
	if err := ValidatePath(o.File); err != nil {
		return o, errorf("objectAlias %q: %v", o.File, err)
	}
	if o.Format == FormatPFX && o.Type != TypeSecret && r.ObjectFormat != FormatPFX {
		// Upstream refuses pfx on a key or certificate, but its check is
		// case-sensitive, so it mounts PFX (or Pfx) as PEM: so does kvmount.
		c.warn(Warning{Object: fmt.Sprintf("%s %s", idx, r.ObjectName), Msg: fmt.Sprintf("objectFormat %s applies to objectType secret only and is ignored for a %s (upstream ignores it too): remove it", r.ObjectFormat, o.Type)})
		o.Format = FormatPEM
	}
	if err := o.checkEncodingAndFormat(); err != nil {
		return o, errorf("%v", err)
	}
	if o.History < 0 {
		c.warn(Warning{Object: fmt.Sprintf("%s %s", idx, r.ObjectName), Msg: fmt.Sprintf("objectVersionHistory %d mounts one version, as upstream does: remove it, or set it to the number of versions wanted", o.History)})
		o.History = 0
	}
	if o.History > maxHistory {
		return o, errorf("objectVersionHistory %d is more than %d versions: lower it", o.History, maxHistory)
	}
	mode, err := parseFileMode(r.FilePermission, c.DefaultMode)
	if err != nil {
		return o, errorf("%v", err)
	}
	o.Mode = mode
	if err := o.parseExtensions(r); err != nil {
		return o, errorf("%v", err)
	}
	return o, nil
}

// parseExtensions reads kvmount's own object fields: optional, the
// object's own vault and tenant, JSON fields.
func (o *Object) parseExtensions(r rawObject) error {
	var err error
	if o.Optional, err = objectBool("optional", r.Optional); err != nil {
		return err
	}
	if o.OptionalWhenForbidden, err = objectBool("optionalWhenForbidden", r.OptionalWhenForbidden); err != nil {
		return err
	}
	if o.OptionalWhenForbidden && !o.Optional {
		return errors.New("optionalWhenForbidden applies to optional objects: add optional: true")
	}
	o.Vault, o.Tenant = strings.TrimSpace(r.KeyvaultName), strings.TrimSpace(r.TenantID)
	if o.Vault != "" {
		if err := checkVaultName(o.Vault); err != nil {
			return err
		}
	}
	if o.Tenant != "" && !tenantRE.MatchString(o.Tenant) {
		return fmt.Errorf("tenantId %q is not a tenant ID (a GUID) or domain", o.Tenant)
	}
	return o.parseJSONFields(r.JSONFields)
}

func (o *Object) parseJSONFields(raw []rawJSONField) error {
	if len(raw) == 0 {
		return nil
	}
	if o.Type != TypeSecret {
		return fmt.Errorf("jsonFields apply to objectType secret only, not %s", o.Type)
	}
	if o.History > 1 {
		return errors.New("jsonFields cannot be combined with objectVersionHistory: mount the versions or the fields")
	}
	if len(raw) > maxJSONFields {
		return fmt.Errorf("%d jsonFields; the limit is %d per object", len(raw), maxJSONFields)
	}
	for i, f := range raw {
		path, alias := strings.TrimSpace(f.Path), strings.TrimSpace(f.ObjectAlias)
		if _, err := ParseJSONPath(path); err != nil {
			return fmt.Errorf("jsonFields[%d]: %w", i, err)
		}
		if alias == "" {
			return fmt.Errorf("jsonFields[%d] (%s): objectAlias is required: the file the field is written to", i, path)
		}
		if err := ValidatePath(alias); err != nil {
			return fmt.Errorf("jsonFields[%d] objectAlias %q: %v", i, alias, err)
		}
		mode, err := parseFileMode(strings.TrimSpace(f.FilePermission), o.Mode)
		if err != nil {
			return fmt.Errorf("jsonFields[%d]: %v", i, err)
		}
		o.JSONFields = append(o.JSONFields, JSONField{Path: path, File: alias, Mode: mode})
	}
	return nil
}

// maxJSONFields bounds one object's jsonFields.
const maxJSONFields = 100

// objectBool reads an object's boolean field (true, "true", false, …).
func objectBool(name, v string) (bool, error) {
	if v = strings.TrimSpace(v); v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s %q is not a boolean: use true or false", name, v)
	}
	return b, nil
}

func trim(r *rawObject) {
	for _, s := range []*string{&r.ObjectName, &r.ObjectType, &r.ObjectVersion, &r.ObjectAlias, &r.ObjectEncoding, &r.ObjectFormat, &r.FilePermission,
		&r.Optional, &r.OptionalWhenForbidden, &r.KeyvaultName, &r.TenantID} {
		*s = strings.TrimSpace(*s)
	}
}

func (o *Object) checkEncodingAndFormat() error {
	switch o.Encoding {
	case "", "utf8":
		o.Encoding = EncodingUTF8
	case EncodingUTF8, EncodingBase64, EncodingHex:
	default:
		return fmt.Errorf("objectEncoding %q is not one of utf-8, base64, hex", o.Encoding)
	}
	if o.Encoding != EncodingUTF8 && o.Type != TypeSecret {
		return fmt.Errorf("objectEncoding applies to objectType secret only, not %s", o.Type)
	}
	switch o.Format {
	case "":
		o.Format = FormatPEM
	case FormatPEM, FormatPFX:
	default:
		return fmt.Errorf("objectFormat %q is not one of pem, pfx", o.Format)
	}
	if o.Format == FormatPFX && o.Type != TypeSecret {
		return fmt.Errorf("objectFormat pfx applies to objectType secret (a certificate's backing secret) only, not %s", o.Type)
	}
	return nil
}

// parseFileMode reads filePermission, an octal string such as "0440".
func parseFileMode(s string, def os.FileMode) (os.FileMode, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("filePermission %q is not an octal file mode from 0000 to 0777 (e.g. \"0440\")", s)
	}
	return os.FileMode(v), nil
}

// Files lists the file paths the object writes (without the extra .crt and
// .key files of --write-cert-and-key-in-separate-files).
func (o Object) Files() []string {
	if o.History <= 1 {
		files := []string{o.File}
		for _, f := range o.JSONFields {
			files = append(files, f.File)
		}
		return files
	}
	files := make([]string, o.History)
	for i := range files {
		files[i] = path.Join(o.File, strconv.Itoa(i))
	}
	return files
}

// ValidatePath is the driver's own path check (atomicdir.ValidatePath), so
// that the provider refuses exactly what the driver would.
func ValidatePath(p string) error { return atomicdir.ValidatePath(p) }

// References are the objects a class's parameters name, each with its
// vault filled in (its own keyvaultName, else the class's): what the sync
// controller matches Key Vault's change events against. A class whose
// objects do not parse references nothing (its mounts fail anyway).
func References(params map[string]string) []Object {
	var c Config
	if c.parseObjects(params, nil, Defaults{}) != nil {
		return nil
	}
	vault := strings.TrimSpace(params["keyvaultName"])
	for i := range c.Objects {
		if c.Objects[i].Vault == "" {
			c.Objects[i].Vault = vault
		}
	}
	return c.Objects
}

// ChangedBy reports whether change c is about o, an object of vault
// (names are case-insensitive, as Key Vault's). A certificate's new
// version is also one of its key and its secret (same name, same
// version); a secret's or a key's is only its own.
func (o Object) ChangedBy(c refresh.Change, vault string) bool {
	if !strings.EqualFold(c.Vault, vault) || !strings.EqualFold(c.Name, o.Name) {
		return false
	}
	switch c.Kind {
	case refresh.KindCertificate:
		return true
	case refresh.KindSecret:
		return o.Type == TypeSecret
	case refresh.KindKey:
		return o.Type == TypeKey
	}
	return false
}
