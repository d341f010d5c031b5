package identity

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAuthorizerCheck(t *testing.T) {
	tests := []struct {
		name     string
		domains  []string
		ids      []string
		patterns []string
		peer     string
		want     string // "" allowed, else the reason
	}{
		{name: "domain", domains: []string{"a.example"}, peer: "spiffe://a.example/anything/at/all"},
		{name: "domain as uri", domains: []string{"spiffe://a.example"}, peer: "spiffe://a.example/x"},
		{name: "other domain", domains: []string{"a.example"}, peer: "spiffe://b.example/x", want: reasonUntrustedDomain},
		{name: "domain is not a suffix match", domains: []string{"example"}, peer: "spiffe://a.example/x", want: reasonUntrustedDomain},
		{name: "exact id", ids: []string{"spiffe://a.example/ns/ewgw/sa/ewgw"}, peer: "spiffe://a.example/ns/ewgw/sa/ewgw"},
		{name: "id is not a prefix match", ids: []string{"spiffe://a.example/ns/ewgw"}, peer: "spiffe://a.example/ns/ewgw/sa/ewgw", want: reasonIDNotAllowed},
		{name: "id of another domain", ids: []string{"spiffe://a.example/ns/ewgw/sa/ewgw"}, peer: "spiffe://b.example/ns/ewgw/sa/ewgw", want: reasonUntrustedDomain},
		{name: "namespace glob", patterns: []string{"spiffe://a.example/ns/*/sa/ewgw"}, peer: "spiffe://a.example/ns/prod/sa/ewgw"},
		{name: "glob needs the rest to match", patterns: []string{"spiffe://a.example/ns/*/sa/ewgw"}, peer: "spiffe://a.example/ns/prod/sa/other", want: reasonIDNotAllowed},
		{name: "glob within a segment", patterns: []string{"spiffe://a.example/ns/team-*/sa/ewgw"}, peer: "spiffe://a.example/ns/team-7/sa/ewgw"},
		{name: "glob does not cross slashes", patterns: []string{"spiffe://a.example/ns/*"}, peer: "spiffe://a.example/ns/a/b", want: reasonIDNotAllowed},
		{name: "class", patterns: []string{"spiffe://a.example/gw-[0-9]"}, peer: "spiffe://a.example/gw-3"},
		{name: "pattern trust domain is literal", patterns: []string{"spiffe://a.example/*"}, peer: "spiffe://b.example/x", want: reasonUntrustedDomain},
		{name: "any of several", domains: []string{"c.example"}, ids: []string{"spiffe://b.example/x"}, patterns: []string{"spiffe://a.example/*"}, peer: "spiffe://b.example/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseAuthorizer(tt.domains, tt.ids, tt.patterns)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.check(spiffeid.RequireFromString(tt.peer)); got != tt.want {
				t.Errorf("check(%s) = %q, want %q", tt.peer, got, tt.want)
			}
		})
	}
}

func TestParseAuthorizerErrors(t *testing.T) {
	tests := []struct {
		name     string
		domains  []string
		ids      []string
		patterns []string
		want     []string // every bad entry is reported
	}{
		{name: "empty", want: []string{"allows no peer"}},
		{name: "domain with a path", domains: []string{"spiffe://a.example/ns/x"}, want: []string{"list it as an id"}},
		{name: "bad domain", domains: []string{"A.example"}, want: []string{`"A.example"`}},
		{name: "bad id", ids: []string{"a.example/x"}, want: []string{`"a.example/x"`}},
		{name: "pattern without path", patterns: []string{"spiffe://a.example"}, want: []string{"path-glob"}},
		{name: "pattern with bad glob", patterns: []string{"spiffe://a.example/[x"}, want: []string{"syntax error"}},
		{name: "pattern with empty segment", patterns: []string{"spiffe://a.example/ns//x"}, want: []string{"empty path segment"}},
		{name: "several", domains: []string{"Bad"}, ids: []string{"nope"}, want: []string{`"Bad"`, `"nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAuthorizer(tt.domains, tt.ids, tt.patterns)
			if err == nil {
				t.Fatal("ParseAuthorizer succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to mention %s", err, w)
				}
			}
		})
	}
}

func TestAuthorizerSetKeepsOldPolicyOnError(t *testing.T) {
	a, err := ParseAuthorizer([]string{"a.example"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Set(nil, nil, nil); !errors.Is(err, ErrEmptyPolicy) {
		t.Fatalf("Set(empty) = %v, want ErrEmptyPolicy", err)
	}
	if got := a.check(spiffeid.RequireFromString("spiffe://a.example/x")); got != "" {
		t.Errorf("after a failed Set the old policy refuses: %s", got)
	}
	var zero *Authorizer
	if got := zero.check(spiffeid.RequireFromString("spiffe://a.example/x")); got == "" {
		t.Error("a nil Authorizer allowed a peer")
	}
	if got := new(Authorizer).check(spiffeid.RequireFromString("spiffe://a.example/x")); got == "" {
		t.Error("the zero Authorizer allowed a peer")
	}
}
