package docs

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// TestMarkdownLinks checks every relative link in every Markdown file of
// the repository: it must name a file or directory inside the repository,
// and a #fragment on a Markdown file must name one of its headings. Web
// links (any URL scheme) and links to a fragment of the same file are
// left alone.
func TestMarkdownLinks(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	files, err := markdownFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found %d Markdown files under %s, want the repository's", len(files), root)
	}
	for _, file := range files {
		rel, _ := filepath.Rel(root, file)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			for _, err := range checkFile(root, file) {
				t.Error(err)
			}
		})
	}
}

// TestCheckFile shows that the check catches what it is for, on a small
// repository of its own.
func TestCheckFile(t *testing.T) {
	root := t.TempDir()
	write(t, root, "go.mod", "module example\n")
	write(t, root, "docs/guide.md", "# Guide\n\n## Set up the peers\n\n## Set up the peers\n\n### `ewgw status` — what it says\n")
	write(t, root, "perf/results/run.csv", "a,b\n")
	tests := []struct {
		name  string
		text  string
		wants []string // substrings of the errors, one per error
	}{
		{name: "file", text: "[g](docs/guide.md) ![p](perf/results/run.csv)"},
		{name: "directory", text: "[r](perf/results) [r](perf/results/)"},
		{name: "heading", text: "[s](docs/guide.md#set-up-the-peers) [s2](docs/guide.md#set-up-the-peers-1)"},
		{name: "heading with code and dash", text: "[s](docs/guide.md#ewgw-status--what-it-says)"},
		{name: "title", text: `[g](docs/guide.md "the guide")`},
		{name: "angle brackets", text: "[g](<docs/guide.md>)"},
		{name: "reference definition", text: "[g]: docs/guide.md\n"},
		{name: "web and mail", text: "[w](https://example.com/x.md) [m](mailto:a@example.com)"},
		{name: "own fragment", text: "[here](#anything)"},
		{name: "code is not a link", text: "`[x](missing.md)`\n\n```\n[x](missing.md)\n```\n"},
		{name: "missing file", text: "[x](docs/missing.md)", wants: []string{"docs/missing.md"}},
		{name: "missing heading", text: "[x](docs/guide.md#nowhere)", wants: []string{"#nowhere"}},
		{name: "outside the repository", text: "[d](../elsewhere/DESIGN.md)", wants: []string{"outside the repository"}},
		{name: "absolute path", text: "[d](/etc/passwd)", wants: []string{"absolute"}},
		{name: "two broken", text: "[a](a.md)\n[b](b.md)", wants: []string{"a.md", "b.md"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(root, "README.md")
			write(t, root, "README.md", tt.text)
			errs := checkFile(root, file)
			if len(errs) != len(tt.wants) {
				t.Fatalf("errors %v, want %d", errs, len(tt.wants))
			}
			for i, want := range tt.wants {
				if !strings.Contains(errs[i].Error(), want) {
					t.Errorf("error %q, want it to mention %q", errs[i], want)
				}
			}
		})
	}
}

func TestSlug(t *testing.T) {
	tests := []struct{ heading, want string }{
		{"Threads (`procs`)", "threads-procs"},
		{"The runtime's monitor thread", "the-runtimes-monitor-thread"},
		{"Client → gateway A → QUIC", "client--gateway-a--quic"},
		{"[perf/README.md](perf/README.md): how to run", "perfreadmemd-how-to-run"},
		{"Tunnel vs direct, 1.0×", "tunnel-vs-direct-10"},
		{"snake_case keys", "snake_case-keys"},
	}
	for _, tt := range tests {
		if got := slug(tt.heading); got != tt.want {
			t.Errorf("slug(%q) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

func write(t *testing.T, root, name, text string) {
	t.Helper()
	path := filepath.Join(root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// markdownFiles lists the *.md files under root, leaving out .git and the
// build outputs that .gitignore names (bin/, out/).
func markdownFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "out") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".md") {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

var (
	// inlineLink matches [text](target) and ![alt](target); the target
	// may be <bracketed> and followed by a "title".
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+"[^"]*")?\s*\)`)
	// refDefinition matches a reference definition: [label]: target.
	refDefinition = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	// htmlLink matches the href and src attributes of inline HTML.
	htmlLink = regexp.MustCompile(`(?:href|src)="([^"]*)"`)
	// codeSpan matches inline code, whose brackets are not links.
	codeSpan = regexp.MustCompile("`+[^`]*`+")
	// urlScheme matches a target that is a URL (https:, mailto:, ...).
	urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
)

// link is one link target and the line it is on.
type link struct {
	line   int
	target string
}

// links returns the link targets in Markdown text, outside fenced code
// blocks and code spans.
func links(text string) []link {
	var out []link
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		if trimmed := strings.TrimSpace(line); fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		} else if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		line = codeSpan.ReplaceAllString(line, "")
		for _, re := range []*regexp.Regexp{inlineLink, refDefinition, htmlLink} {
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				target := strings.TrimSuffix(strings.TrimPrefix(m[1], "<"), ">")
				out = append(out, link{line: i + 1, target: target})
			}
		}
	}
	return out
}

// checkFile returns an error for every relative link in the Markdown file
// that does not resolve inside root.
func checkFile(root, file string) []error {
	text, err := os.ReadFile(file)
	if err != nil {
		return []error{err}
	}
	rel, _ := filepath.Rel(root, file)
	var errs []error
	for _, l := range links(string(text)) {
		if err := checkLink(root, file, l.target); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %w", filepath.ToSlash(rel), l.line, l.target, err))
		}
	}
	return errs
}

// checkLink checks one target of a link in file.
func checkLink(root, file, target string) error {
	if target == "" || strings.HasPrefix(target, "#") || urlScheme.MatchString(target) {
		return nil
	}
	pathPart, fragment, _ := strings.Cut(target, "#")
	if q := strings.IndexByte(pathPart, '?'); q >= 0 {
		pathPart = pathPart[:q]
	}
	p, err := url.PathUnescape(pathPart)
	if err != nil {
		return err
	}
	if strings.HasPrefix(p, "/") {
		return errors.New("absolute path: link relative to the file instead")
	}
	dest := filepath.Join(filepath.Dir(file), filepath.FromSlash(p))
	if rel, err := filepath.Rel(root, dest); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return errors.New("outside the repository")
	}
	info, err := os.Stat(dest)
	if err != nil {
		return errors.New("no such file in the repository")
	}
	if fragment == "" || info.IsDir() || !strings.HasSuffix(dest, ".md") {
		return nil
	}
	text, err := os.ReadFile(dest)
	if err != nil {
		return err
	}
	if !anchors(string(text))[fragment] {
		return fmt.Errorf("no heading for #%s in %s", fragment, filepath.Base(dest))
	}
	return nil
}

// htmlAnchor matches explicit anchors in inline HTML.
var htmlAnchor = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)

// anchors returns the fragments that the headings of a Markdown text get
// on GitHub: their slugs, a repeated slug numbered -1, -2, ...
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fence := ""
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case fence != "":
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		case strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~"):
			fence = trimmed[:3]
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		level := len(line) - len(strings.TrimLeft(line, "#"))
		if level == 0 || level > 6 || (len(line) > level && line[level] != ' ') {
			continue
		}
		s := slug(strings.TrimRight(strings.TrimSpace(line[level:]), "#"))
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// mdLinkText matches a link in a heading, whose text alone is rendered.
var mdLinkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's anchor for a heading: lower case, spaces to hyphens,
// and everything but letters, marks, digits, connector punctuation (_),
// spaces and hyphens dropped.
func slug(heading string) string {
	heading = mdLinkText.ReplaceAllString(strings.TrimSpace(heading), "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.Pc):
			b.WriteRune(r)
		}
	}
	return b.String()
}
