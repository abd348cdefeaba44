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
}

// strictYAML decodes one YAML document into v, refusing unknown fields.
func strictYAML(text string, v any) error {
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
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
	if err := strictYAML(text, &arr); err != nil {
		return &Error{Field: "objects", Msg: fmt.Sprintf("objects is not a YAML mapping with an array of strings (%v); write it as objects: |, then array:, then one '- |' block per object", err)}
	}
	if len(arr.Array) > maxObjects {
		return &Error{Field: "objects", Msg: fmt.Sprintf("%d objects; the limit is %d per class", len(arr.Array), maxObjects)}
	}
	owner := map[string]int{}
	var paths []string
	for i, entry := range arr.Array {
		o, err := c.parseObject(i, entry)
		if err != nil {
			return err
		}
		for _, f := range o.Files() {
			if _, dup := owner[f]; !dup {
				owner[f] = i
			}
			paths = append(paths, f)
		}
		c.Objects = append(c.Objects, o)
	}
	return c.checkFiles(paths, owner)
}

// checkFiles refuses a class whose objects' files cannot all exist: one
// written twice, or a file that is also another's directory (objectAlias a
// and a/b; a version-history directory and an alias of the same name).
func (c *Config) checkFiles(paths []string, owner map[string]int) error {
	var pc *atomicdir.PathConflictError
	if err := atomicdir.CheckPaths(paths); errors.As(err, &pc) {
		first := owner[pc.Path]
		by := func(i int) string { return fmt.Sprintf("objects[%d] (%s)", i, c.Objects[i].ID()) }
		if pc.Under == "" {
			second := lastOwner(c.Objects, pc.Path, first)
			return &Error{Field: "objects", Object: strconv.Itoa(second), Msg: fmt.Sprintf("file %q is also written by %s: give one of them a different objectAlias", pc.Path, by(first))}
		}
		return &Error{Field: "objects", Object: strconv.Itoa(owner[pc.Under]), Msg: fmt.Sprintf("writes %q, but %s writes the file %q, so it cannot also be a directory: give one of them a different objectAlias", pc.Under, by(first), pc.Path)}
	}
	return nil
}

// lastOwner is the last object other than first that writes path.
func lastOwner(objs []Object, path string, first int) int {
	for i := len(objs) - 1; i >= 0; i-- {
		if i != first && slices.Contains(objs[i].Files(), path) {
			return i
		}
	}
	return first
}

func (c *Config) parseObject(i int, entry string) (Object, error) {
	idx := strconv.Itoa(i)
	var r rawObject
	if err := strictYAML(entry, &r); err != nil {
		return Object{}, &Error{Field: "objects", Object: idx, Msg: fmt.Sprintf("%v; the fields are objectName, objectType, objectVersion, objectAlias, objectEncoding, objectFormat, objectVersionHistory and filePermission", err)}
	}
	trim(&r)
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
	if err := o.checkEncodingAndFormat(); err != nil {
		return o, errorf("%v", err)
	}
	if o.History < 0 || o.History > maxHistory {
		return o, errorf("objectVersionHistory %d is out of range 0-%d", o.History, maxHistory)
	}
	mode, err := parseFileMode(r.FilePermission, c.DefaultMode)
	if err != nil {
		return o, errorf("%v", err)
	}
	o.Mode = mode
	return o, nil
}

func trim(r *rawObject) {
	for _, s := range []*string{&r.ObjectName, &r.ObjectType, &r.ObjectVersion, &r.ObjectAlias, &r.ObjectEncoding, &r.ObjectFormat, &r.FilePermission} {
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
		return []string{o.File}
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
