//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// scenarioFile is scenarios.yaml: the scenarios both environments run.
type scenarioFile struct {
	Backends  map[string]backend `json:"backends"`
	Scenarios []scenario         `json:"scenarios"`
}

// backend is one server a call may reach.
type backend struct {
	Cluster string `json:"cluster"`
	// Secret is namespace/name of the kubernetes.io/tls Secret holding its
	// certificate, issued for Names in that namespace.
	Secret string   `json:"secret"`
	Names  []string `json:"names"`
	// Body is its answer; {sni} stands for the name asked for.
	Body string `json:"body"`
}

type scenario struct {
	Name  string `json:"name"`
	Doc   string `json:"doc"`
	Steps []step `json:"steps"`
}

// step is one action or check; exactly one field is set (scenarios.yaml
// describes each).
type step struct {
	Call     *callStep     `json:"call,omitempty"`
	Until    *callStep     `json:"until,omitempty"`
	Split    *splitStep    `json:"split,omitempty"`
	Scale    *scaleStep    `json:"scale,omitempty"`
	Annotate *annotateStep `json:"annotate,omitempty"`
	Apply    *manifestStep `json:"apply,omitempty"`
	Delete   *manifestStep `json:"delete,omitempty"`
	Decision *decisionStep `json:"decision,omitempty"`
	Peer     *peerStep     `json:"peer,omitempty"`
	Mirror   *mirrorStep   `json:"mirror,omitempty"`
	Kill     *clusterStep  `json:"kill,omitempty"`
	Stop     *clusterStep  `json:"stop,omitempty"`
	Start    *startStep    `json:"start,omitempty"`
	RBAC     *rbacStep     `json:"rbac,omitempty"`
	Deploy   *clusterStep  `json:"deploy,omitempty"`
	Attack   *attackStep   `json:"attack,omitempty"`
	Refuse   *refuseStep   `json:"refuse,omitempty"`
	UDP      *udpStep      `json:"udp,omitempty"`
}

type callStep struct {
	SNI     string `json:"sni"`
	Want    string `json:"want"`
	Via     string `json:"via,omitempty"`
	Measure string `json:"measure,omitempty"`
	// Clean (until only): no connection may be refused on the way.
	Clean bool `json:"clean,omitempty"`
	// Within (until only): the matching connection must have ended this
	// long after the last change, at most.
	Within duration `json:"within,omitempty"`
}

type splitStep struct {
	SNI         string             `json:"sni"`
	Connections int                `json:"connections"`
	Workers     int                `json:"workers"`
	Want        map[string]float64 `json:"want"`
	Tolerance   float64            `json:"tolerance"`
}

type scaleStep struct {
	Cluster    string `json:"cluster"`
	Deployment string `json:"deployment"`
	Replicas   int32  `json:"replicas"`
}

type annotateStep struct {
	Cluster string             `json:"cluster"`
	Service string             `json:"service"`
	Set     map[string]*string `json:"set"`
}

type manifestStep struct {
	Cluster  string `json:"cluster"`
	Manifest string `json:"manifest"`
	Kind     string `json:"kind,omitempty"`
}

type decisionStep struct {
	Cluster string `json:"cluster"`
	SNI     string `json:"sni"`
	Mode    string `json:"mode"`
}

type peerStep struct {
	Cluster string `json:"cluster"`
	Peer    string `json:"peer"`
	Up      bool   `json:"up"`
	// Transport, when set: every connection to the peer is on it (quic,
	// tcp).
	Transport string   `json:"transport,omitempty"`
	Within    duration `json:"within,omitempty"` // the condition held this long after the last change, at most
	Measure   string   `json:"measure,omitempty"`
}

// udpStep drops UDP between the clusters, or lets it through again.
type udpStep struct {
	Blocked bool `json:"blocked"`
}

// duration is a time.Duration written as "2s" in scenarios.yaml.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = duration(v)
	return err
}

type mirrorStep struct {
	Cluster string `json:"cluster"`
	Service string `json:"service"`
	Present bool   `json:"present"`
	Measure string `json:"measure,omitempty"`
}

type clusterStep struct {
	Cluster string `json:"cluster"`
}

type startStep struct {
	Cluster string `json:"cluster"`
	Fails   string `json:"fails,omitempty"`
}

type rbacStep struct {
	Cluster     string `json:"cluster"`
	ClusterRole string `json:"clusterrole"`
	Remove      struct {
		Group    string `json:"group"`
		Resource string `json:"resource"`
		Verb     string `json:"verb"`
	} `json:"remove"`
}

// loadScenarios reads and checks scenarios.yaml.
func loadScenarios() (*scenarioFile, error) {
	path := filepath.Join(suiteDir(), "scenarios.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f scenarioFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, s := range f.Scenarios {
		for i, st := range s.Steps {
			if n := st.kinds(); n != 1 {
				return nil, fmt.Errorf("%s: scenario %s step %d: %d actions, want 1", path, s.Name, i+1, n)
			}
			if w := st.wants(); w != "" && w != "refused" && f.Backends[w].Cluster == "" {
				return nil, fmt.Errorf("%s: scenario %s step %d: unknown backend %q", path, s.Name, i+1, w)
			}
		}
	}
	return &f, nil
}

// kinds counts the actions set in st.
func (st step) kinds() int {
	n := 0
	for _, set := range []bool{st.Call != nil, st.Until != nil, st.Split != nil, st.Scale != nil,
		st.Annotate != nil, st.Apply != nil, st.Delete != nil, st.Decision != nil, st.Peer != nil,
		st.Mirror != nil, st.Kill != nil, st.Stop != nil, st.Start != nil, st.RBAC != nil, st.Deploy != nil,
		st.Attack != nil, st.Refuse != nil, st.UDP != nil} {
		if set {
			n++
		}
	}
	return n
}

// wants is the backend a call step expects, if it is one.
func (st step) wants() string {
	switch {
	case st.Call != nil:
		return st.Call.Want
	case st.Until != nil:
		return st.Until.Want
	}
	return ""
}

// String describes st for logs, as scenarios.yaml writes it.
func (st step) String() string {
	b, err := yaml.Marshal(st)
	if err != nil {
		return err.Error()
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(string(b), "\n", " ")), " ")
}
