package kube

import (
	"cmp"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/ewgw/ewgw/internal/model"
	"github.com/ewgw/ewgw/internal/route"
)

// state is the converted view of the informer caches, and the last
// snapshot per service. Informer handlers write it; the rebuild reads it.
type state struct {
	mu       sync.Mutex
	services map[model.ServiceKey]*service
	slices   map[model.ServiceKey]map[string]*slice // by slice name
	exports  map[model.ServiceKey]*exportTo         // a ServiceExport exists, with its audience
	dirty    map[model.ServiceKey]bool              // to convert again
	out      map[model.ServiceKey]route.Service     // as last converted
}

func newState() *state {
	return &state{
		services: map[model.ServiceKey]*service{},
		slices:   map[model.ServiceKey]map[string]*slice{},
		exports:  map[model.ServiceKey]*exportTo{},
		dirty:    map[model.ServiceKey]bool{},
		out:      map[model.ServiceKey]route.Service{},
	}
}

// setService records svc, or its absence when nil.
func (st *state) setService(key model.ServiceKey, svc *service) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if svc == nil {
		delete(st.services, key)
	} else {
		st.services[key] = svc
	}
	st.dirty[key] = true
}

// setSlice records slice name of service to, moving it from service from
// where that differs; s nil removes it. A zero key is no service.
func (st *state) setSlice(name string, from, to model.ServiceKey, s *slice) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if from != (model.ServiceKey{}) && (from != to || s == nil) {
		st.removeSlice(from, name)
	}
	if to == (model.ServiceKey{}) {
		return
	}
	if s == nil {
		st.removeSlice(to, name)
		return
	}
	if st.slices[to] == nil {
		st.slices[to] = map[string]*slice{}
	}
	st.slices[to][name] = s
	st.dirty[to] = true
}

func (st *state) removeSlice(key model.ServiceKey, name string) {
	delete(st.slices[key], name)
	if len(st.slices[key]) == 0 {
		delete(st.slices, key)
	}
	st.dirty[key] = true
}

// setExport records the ServiceExport for key and its audience, or its
// absence when to is nil.
func (st *state) setExport(key model.ServiceKey, to *exportTo) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if to != nil {
		st.exports[key] = to
	} else {
		delete(st.exports, key)
	}
	st.dirty[key] = true
}

// rebuild converts the dirty services again. It returns the whole sorted
// snapshot when any service changed or force is set, else nil and false.
// The snapshot shares its slices with later ones: no one may modify it.
func (st *state) rebuild(force bool) ([]route.Service, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	changed := false
	for key := range st.dirty {
		prev, had := st.out[key]
		svc, ok := st.services[key]
		if !ok {
			delete(st.out, key)
			changed = changed || had
			continue
		}
		cur := convert(key, svc, slices.Collect(maps.Values(st.slices[key])), st.exports[key])
		if !had || !reflect.DeepEqual(prev, cur) {
			st.out[key] = cur
			changed = true
		}
	}
	clear(st.dirty)
	if !changed && !force {
		return nil, false
	}
	return st.snapshot(), true
}

// snapshot returns the last converted services sorted by namespace/name.
func (st *state) snapshot() []route.Service {
	out := slices.Collect(maps.Values(st.out))
	slices.SortFunc(out, func(a, b route.Service) int {
		return cmp.Or(cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
	return out
}
