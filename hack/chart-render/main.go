// chart-render renders a Helm chart the way `helm template` does, for tests on machines without
// helm: Go's text/template with the sprig functions and Helm's own (include, tpl, required,
// toYaml, fromYaml, toJson, fromJson, lookup), missing keys rendering as empty, values.yaml
// coalesced with -f files and --set overrides, partials (_*.tpl) defined but not emitted.
//
// It builds offline against Debian's packages, in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o chart-render ./hack/chart-render
//
// (apt-get install golang-go golang-github-masterminds-sprig-dev golang-github-ghodss-yaml-dev)
//
// Usage: chart-render [--namespace NS] [--release NAME] [-f values.yaml]... [--set k=v]...
//
//	[--set-string k=v]... [--include-crds] [--notes] CHART_DIR
//
// Output: every non-empty manifest as `---\n# Source: CHART/templates/FILE\n...`, like helm.
// A template error (including `required` and `fail`) exits 1 with Helm's message on stderr.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig" // Debian lays sprig/v3 out here (GOPATH mode)
	"github.com/ghodss/yaml"
)

// Helm stops recursive include at this depth.
const recursionMaxNums = 1000

type chartMetadata struct {
	APIVersion  string   `json:"apiVersion,omitempty"`
	Name        string   `json:"name,omitempty"`
	Version     string   `json:"version,omitempty"`
	AppVersion  string   `json:"appVersion,omitempty"`
	Description string   `json:"description,omitempty"`
	Type        string   `json:"type,omitempty"`
	KubeVersion string   `json:"kubeVersion,omitempty"`
	Home        string   `json:"home,omitempty"`
	Sources     []string `json:"sources,omitempty"`
	Keywords    []string `json:"keywords,omitempty"`
	Icon        string   `json:"icon,omitempty"`
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	namespace   string
	release     string
	valueFiles  multiFlag
	sets        multiFlag
	setStrings  multiFlag
	includeCRDs bool
	notes       bool
	chartDir    string
}

func main() {
	opts, err := parseArgs(os.Args[1:])
	if err == nil {
		err = run(opts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func parseArgs(args []string) (options, error) {
	opts := options{namespace: "default", release: "release-name"}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", arg)
			}
			i++
			return args[i], nil
		}
		var err error
		var value string
		switch arg {
		case "--namespace", "-n":
			value, err = next()
			opts.namespace = value
		case "--release":
			value, err = next()
			opts.release = value
		case "-f", "--values":
			value, err = next()
			opts.valueFiles = append(opts.valueFiles, value)
		case "--set":
			value, err = next()
			opts.sets = append(opts.sets, value)
		case "--set-string":
			value, err = next()
			opts.setStrings = append(opts.setStrings, value)
		case "--include-crds":
			opts.includeCRDs = true
		case "--notes":
			opts.notes = true
		default:
			if strings.HasPrefix(arg, "-") || opts.chartDir != "" {
				return opts, fmt.Errorf("unexpected argument %q", arg)
			}
			opts.chartDir = arg
		}
		if err != nil {
			return opts, err
		}
	}
	if opts.chartDir == "" {
		return opts, errors.New("usage: chart-render [flags] CHART_DIR")
	}
	return opts, nil
}

func run(opts options) error {
	meta, err := readChart(opts.chartDir)
	if err != nil {
		return err
	}
	defaults, err := readValues(filepath.Join(opts.chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	overrides := map[string]interface{}{}
	for _, file := range opts.valueFiles {
		values, err := readValues(file)
		if err != nil {
			return err
		}
		overrides = mergeMaps(overrides, values)
	}
	for _, set := range opts.sets {
		if err := setValue(overrides, set, true); err != nil {
			return err
		}
	}
	for _, set := range opts.setStrings {
		if err := setValue(overrides, set, false); err != nil {
			return err
		}
	}
	values := coalesce(overrides, defaults)
	top := map[string]interface{}{
		"Values": values,
		"Chart":  meta,
		"Release": map[string]interface{}{
			"Name":      opts.release,
			"Namespace": opts.namespace,
			"IsInstall": true,
			"IsUpgrade": false,
			"Revision":  1,
			"Service":   "Helm",
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.28.0", "Major": "1", "Minor": "28"},
		},
	}
	rendered, err := renderTemplates(opts.chartDir, meta.Name, top)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(rendered))
	for name := range rendered {
		names = append(names, name)
	}
	sort.Strings(names)
	var out strings.Builder
	for _, name := range names {
		isNotes := strings.HasSuffix(name, "/NOTES.txt")
		if isNotes != opts.notes {
			continue
		}
		body := rendered[name]
		if strings.TrimSpace(body) == "" {
			continue
		}
		if isNotes {
			out.WriteString(body)
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimRight(body, "\n"))
	}
	if opts.includeCRDs && !opts.notes {
		crds, _ := filepath.Glob(filepath.Join(opts.chartDir, "crds", "*.yaml"))
		sort.Strings(crds)
		for _, file := range crds {
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(&out, "---\n# Source: %s/crds/%s\n%s\n", meta.Name, filepath.Base(file), strings.TrimRight(string(data), "\n"))
		}
	}
	_, err = os.Stdout.WriteString(out.String())
	return err
}

func readChart(dir string) (chartMetadata, error) {
	var meta chartMetadata
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return meta, err
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return meta, fmt.Errorf("Chart.yaml: %w", err)
	}
	if meta.Name == "" || meta.Version == "" {
		return meta, errors.New("Chart.yaml: name and version are required")
	}
	return meta, nil
}

// Helm's chartutil.ReadValues: YAML through JSON, so numbers are float64.
func readValues(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	values := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if values == nil {
		values = map[string]interface{}{}
	}
	return values, nil
}

// mergeMaps: later -f files win, maps merged deeply (Helm's mergeMaps).
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if am, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(am, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce: user values over chart defaults, deeply; a user null deletes the default
// (Helm's CoalesceValues).
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(defaults))
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		um, userIsMap := v.(map[string]interface{})
		dm, defaultIsMap := out[k].(map[string]interface{})
		if userIsMap && defaultIsMap {
			out[k] = coalesce(um, dm)
		} else {
			out[k] = v
		}
	}
	return out
}

// setValue applies `a.b\.c=value` (Helm's --set for dotted paths): with typed true, the
// value is a bool, null or int64 where it reads as one, as Helm's strvals does.
func setValue(into map[string]interface{}, expr string, typed bool) error {
	eq := strings.IndexByte(expr, '=')
	if eq <= 0 {
		return fmt.Errorf("--set %q: expected key=value", expr)
	}
	keys := splitKey(expr[:eq])
	raw := expr[eq+1:]
	var value interface{} = raw
	if typed {
		value = typedValue(raw)
	}
	node := into
	for _, key := range keys[:len(keys)-1] {
		child, ok := node[key].(map[string]interface{})
		if !ok {
			child = map[string]interface{}{}
			node[key] = child
		}
		node = child
	}
	node[keys[len(keys)-1]] = value
	return nil
}

func splitKey(key string) []string {
	var parts []string
	var current strings.Builder
	for i := 0; i < len(key); i++ {
		switch {
		case key[i] == '\\' && i+1 < len(key):
			i++
			current.WriteByte(key[i])
		case key[i] == '.':
			parts = append(parts, current.String())
			current.Reset()
		default:
			current.WriteByte(key[i])
		}
	}
	return append(parts, current.String())
}

func typedValue(raw string) interface{} {
	switch raw {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	// Helm keeps "0"-prefixed numbers as strings.
	if len(raw) > 1 && raw[0] == '0' {
		return raw
	}
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
		return n
	}
	return raw
}

func renderTemplates(dir, chartName string, top map[string]interface{}) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "templates", "*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	t := template.New("gotpl").Option("missingkey=zero")
	includedNames := map[string]int{}
	funcs := funcMap()
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includedNames[name] > recursionMaxNums {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		includedNames[name]--
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		parsed, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf strings.Builder
		if err := parsed.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	t.Funcs(funcs)
	var names []string
	for _, file := range files {
		base := filepath.Base(file)
		info, err := os.Stat(file)
		if err != nil || info.IsDir() {
			continue
		}
		if !(strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml") || strings.HasSuffix(base, ".tpl") || base == "NOTES.txt") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		name := path.Join(chartName, "templates", base)
		if _, err := t.New(name).Parse(string(data)); err != nil {
			return nil, fmt.Errorf("parse error in %q: %w", name, err)
		}
		names = append(names, name)
	}
	rendered := map[string]string{}
	for _, name := range names {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		values := map[string]interface{}{}
		for k, v := range top {
			values[k] = v
		}
		values["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, values); err != nil {
			return nil, fmt.Errorf("execution error in %s", cleanupError(err))
		}
		rendered[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return rendered, nil
}

func cleanupError(err error) string {
	return strings.TrimPrefix(err.Error(), "template: ")
}

// funcMap: sprig's text functions less env/expandenv, plus Helm's own (include, tpl and
// required are bound per render).
func funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		var a []interface{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromJsonArray"] = func(s string) []interface{} {
		var a []interface{}
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	// No cluster here: lookup finds nothing, as under `helm template`.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}
