package main

// The images of a compose file, for `kra push` with no image named: each
// service's image:, with ${VAR} and ${VAR:-default} from the environment,
// or, for a service that is only built, the name docker compose build
// gives it (<project>-<service>). This reads nothing else of the file.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// composeFiles are the names docker compose looks for, in its order.
var composeFiles = []string{"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"}

// findComposeFile is file, or the first of composeFiles in dir.
func findComposeFile(dir, file string) (string, error) {
	if file != "" {
		return file, nil
	}
	for _, n := range composeFiles {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no image named and no compose file here (%s): name the images to push, or the compose file with -f", strings.Join(composeFiles, ", "))
}

// composeImages reads the images of the compose file at p.
func composeImages(p string) ([]string, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("compose file %s does not exist", p)
	}
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, err
	}
	imgs, err := parseComposeImages(b, filepath.Base(filepath.Dir(abs)), os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("%s: no service has an image to push", p)
	}
	return imgs, nil
}

// parseComposeImages returns the images of a compose file, sorted, each
// once. dir is the name of the file's directory, the project's name when
// the file gives none.
func parseComposeImages(b []byte, dir string, env func(string) (string, bool)) ([]string, error) {
	var f struct {
		Name     string `json:"name"`
		Services map[string]*struct {
			Image string `json:"image"`
			Build any    `json:"build"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not a compose file: %w", err)
	}
	project := f.Name
	if project == "" {
		project = dir
	}
	project, err := interpolate(project, env)
	if err != nil {
		return nil, err
	}
	project = projectName(project)
	seen := map[string]bool{}
	var out []string
	for svc, s := range f.Services {
		if s == nil {
			continue
		}
		img, err := interpolate(s.Image, env)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", svc, err)
		}
		if img == "" && s.Build != nil {
			if project == "" {
				return nil, fmt.Errorf("service %s is built and has no image: name one with image:", svc)
			}
			img = project + "-" + svc
		}
		if img == "" || seen[img] {
			continue
		}
		seen[img] = true
		out = append(out, img)
	}
	sort.Strings(out)
	return out, nil
}

var notProjectChar = regexp.MustCompile(`[^a-z0-9_-]+`)

// projectName normalizes a project name as compose does: lower case,
// letters, digits, dashes and underscores, starting with a letter or a
// digit.
func projectName(s string) string {
	s = notProjectChar.ReplaceAllString(strings.ToLower(s), "")
	return strings.TrimLeft(s, "_-")
}

// interpolate expands $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?message} and ${VAR?message} as compose does; $$ is a dollar.
func interpolate(s string, env func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(s) {
			b.WriteByte('$')
			i++
			continue
		}
		switch n := s[i+1]; {
		case n == '$':
			b.WriteByte('$')
			i += 2
		case n == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("invalid interpolation %q: no closing brace", s[i:])
			}
			v, err := expand(s[i+2:i+2+end], env)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += 3 + end
		case isNameStart(n):
			j := i + 2
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			v, _ := env(s[i+1 : j])
			b.WriteString(v)
			i = j
		default:
			return "", fmt.Errorf("invalid interpolation %q: use $$ for a dollar", s[i:])
		}
	}
	return b.String(), nil
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isNameChar(c byte) bool { return isNameStart(c) || (c >= '0' && c <= '9') }

// expand is the value of the inside of ${...}.
func expand(expr string, env func(string) (string, bool)) (string, error) {
	j := 0
	for j < len(expr) && isNameChar(expr[j]) {
		j++
	}
	name, op := expr[:j], expr[j:]
	if name == "" || !isNameStart(name[0]) {
		return "", fmt.Errorf("invalid interpolation ${%s}", expr)
	}
	v, set := env(name)
	switch {
	case op == "":
		return v, nil
	case strings.HasPrefix(op, ":-"):
		if v == "" {
			return op[2:], nil
		}
		return v, nil
	case strings.HasPrefix(op, "-"):
		if !set {
			return op[1:], nil
		}
		return v, nil
	case strings.HasPrefix(op, ":?"):
		if v == "" {
			return "", fmt.Errorf("%s: %s", name, op[2:])
		}
		return v, nil
	case strings.HasPrefix(op, "?"):
		if !set {
			return "", fmt.Errorf("%s: %s", name, op[1:])
		}
		return v, nil
	}
	return "", fmt.Errorf("invalid interpolation ${%s}", expr)
}
