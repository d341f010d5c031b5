package mirror

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/ewgw/ewgw/internal/model"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Set replaces the desired set: the exported services of the whole cluster
// set, this cluster's and its peers'. Each port of an export becomes a
// mirror port; exports of the same service are merged (the union of their
// ports), and their peers and ready counts are not used: a mirror stands
// for the service wherever it is served. Set does not block on the API;
// the latest set wins. A service whose mirror name would not be a valid
// Service name, or that has no ports, is skipped, logged once and counted.
func (m *Mirror) Set(exports []model.Export) {
	desired := make(map[key]want, len(exports))
	skipped := map[string]string{}
	for _, e := range exports {
		k, err := m.keyOf(e)
		if err != nil {
			skipped[e.Service.String()] = err.Error()
			continue
		}
		w := desired[k]
		w.source = e.Service.Name
		for _, p := range e.Ports {
			if p.Port != 0 {
				w.ports = append(w.ports, p.Port)
			}
		}
		desired[k] = w
	}
	for k, w := range desired {
		slices.Sort(w.ports)
		w.ports = slices.Compact(w.ports)
		desired[k] = w
	}
	capped := m.capped(desired)
	m.mu.Lock()
	old := m.want
	m.want = desired
	m.gen++
	for _, set := range []map[key]want{old, desired} {
		for k := range set {
			m.pending[k] = m.gen
			if m.queue != nil {
				m.queue.Add(k)
			}
		}
	}
	m.checkSettled()
	prev := m.skipped
	m.skipped = skipped
	prevCapped := m.lastCapped
	m.lastCapped = capped
	m.mu.Unlock()
	for id, reason := range skipped {
		if _, ok := prev[id]; !ok {
			m.m.skipped.Inc()
			m.log.Warn("mirror skipped", "service", id, "reason", reason)
		}
	}
	if capped > prevCapped {
		m.m.skipped.Add(float64(capped - prevCapped))
	}
	if capped != prevCapped && capped > 0 {
		m.log.Warn("mirrors capped", "kept", m.cfg.MaxServices, "left_out", capped)
	}
	m.firstSetOnce.Do(func() { close(m.firstSet) })
}

// keyOf returns the mirror of e, or why it has none.
func (m *Mirror) keyOf(e model.Export) (key, error) {
	if errs := validation.IsDNS1123Label(e.Service.Namespace); len(errs) > 0 {
		return key{}, errors.New("invalid namespace")
	}
	if !slices.ContainsFunc(e.Ports, func(p model.ExportPort) bool { return p.Port != 0 }) {
		return key{}, errors.New("no ports")
	}
	name, err := mirrorName(e.Service.Name, m.cfg.Suffix)
	if err != nil {
		return key{}, err
	}
	return key{e.Service.Namespace, name}, nil
}

// wanted returns the desired state of k, if any.
func (m *Mirror) wanted(k key) (want, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.want[k]
	return w, ok
}

// enqueueNamespace queues the desired mirrors of namespace ns.
func (m *Mirror) enqueueNamespace(ns string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.want {
		if k.namespace == ns && m.queue != nil {
			m.queue.Add(k)
		}
	}
}

// capped removes from desired the mirrors past Config.MaxServices, in
// namespace/name order, and returns how many it removed.
func (m *Mirror) capped(desired map[key]want) int {
	over := len(desired) - m.cfg.MaxServices
	if over <= 0 {
		return 0
	}
	keys := slices.SortedFunc(maps.Keys(desired), func(a, b key) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys[m.cfg.MaxServices:] {
		delete(desired, k)
	}
	return over
}
