package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
	"github.com/ewgw/ewgw/internal/model"
)

// informerSet is the running informers and their handlers' registrations.
type informerSet struct {
	kube   []cache.SharedIndexInformer        // Services and EndpointSlices
	mcs    mcsinformers.SharedInformerFactory // nil without ServiceExports
	synced map[string]cache.ResourceEventHandlerRegistration
	wg     sync.WaitGroup // the kube informers' goroutines
}

// startInformers starts the informers (resync 0: the state follows events
// only) with their handlers. exportVersion is the ServiceExport version to
// watch, "" for none. The set it returns must be shut down, error or not.
func (s *Source) startInformers(ctx context.Context, exportVersion string) (*informerSet, error) {
	ns := s.cfg.Namespace
	set := &informerSet{synced: map[string]cache.ResourceEventHandlerRegistration{}}
	// No indexes: the handlers keep their own state and never query the
	// caches (the factory added a namespace index nobody read).
	svcs, eps := s.cfg.Client.CoreV1().Services(ns), s.cfg.Client.DiscoveryV1().EndpointSlices(ns)
	services := kubeclient.Informer(&corev1.Service{}, nil, "", svcs.List, svcs.Watch)
	// Only slices that belong to a service (the label exists), and not the
	// import mirror's.
	sliceSel := discoveryv1.LabelServiceName + "," + discoveryv1.LabelManagedBy + "!=" + mirrorSliceManager
	endpointSlices := kubeclient.Informer(&discoveryv1.EndpointSlice{}, nil, sliceSel, eps.List, eps.Watch)
	set.kube = []cache.SharedIndexInformer{services, endpointSlices}
	var errs []error
	for _, inf := range set.kube {
		errs = append(errs, inf.SetTransform(slim))
	}
	errs = append(errs,
		s.handle(set, resServices, services, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.onService(nil, obj) },
			UpdateFunc: s.onService,
			DeleteFunc: func(obj any) { s.onService(obj, nil) },
		}),
		s.handle(set, resEndpointSlices, endpointSlices, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.onSlice(nil, obj) },
			UpdateFunc: s.onSlice,
			DeleteFunc: func(obj any) { s.onSlice(obj, nil) },
		}),
	)
	if exportVersion != "" {
		set.mcs = mcsinformers.NewSharedInformerFactoryWithOptions(s.cfg.MCS, 0, mcsinformers.WithNamespace(ns), mcsinformers.WithTransform(slim))
		exports := set.mcs.Multicluster().V1alpha1().ServiceExports().Informer()
		if exportVersion == "v1beta1" {
			exports = set.mcs.Multicluster().V1beta1().ServiceExports().Informer()
		}
		errs = append(errs, s.handle(set, resServiceExports, exports, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.onExport(obj, true) },
			UpdateFunc: func(_, obj any) { s.onExport(obj, true) },
			DeleteFunc: func(obj any) { s.onExport(obj, false) },
		}))
	}
	if err := errors.Join(errs...); err != nil {
		return set, fmt.Errorf("kube: set up informers: %w", err)
	}
	for _, inf := range set.kube {
		set.wg.Go(func() { inf.RunWithContext(ctx) })
	}
	if set.mcs != nil {
		set.mcs.Start(ctx.Done())
	}
	return set, nil
}

// handle adds h to inf and routes inf's list and watch errors to the
// logger and metrics rather than klog.
func (s *Source) handle(set *informerSet, resource string, inf cache.SharedIndexInformer, h cache.ResourceEventHandler) error {
	if err := inf.SetWatchErrorHandlerWithContext(s.watchError(resource)); err != nil {
		return err
	}
	reg, err := inf.AddEventHandler(h)
	if err != nil {
		return err
	}
	set.synced[resource] = reg
	return nil
}

// watchError logs and counts a failed list or watch. The reflector retries
// with backoff; a watch the server ended normally (io.EOF) is no error.
func (s *Source) watchError(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) {
			return
		}
		s.m.watchErrors.WithLabelValues(resource).Inc()
		level := slog.LevelWarn
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) || errors.Is(err, io.ErrUnexpectedEOF) {
			level = slog.LevelDebug // the reflector lists again; routine
		}
		s.log.Log(ctx, level, "kubernetes watch failed", "resource", resource, "err", err)
	}
}

// waitForSync waits, at most syncTimeout, until every cache has synced and
// every handler has seen the initial list.
func (set *informerSet) waitForSync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	for _, reg := range set.synced {
		select {
		case <-reg.HasSyncedChecker().Done():
		case <-ctx.Done():
		}
	}
	var pending []string
	for _, name := range slices.Sorted(maps.Keys(set.synced)) {
		if !set.synced[name].HasSynced() {
			pending = append(pending, name)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	return fmt.Errorf("kube: %s not synced within %s (see the list errors logged)", strings.Join(pending, ", "), syncTimeout)
}

// shutdown stops the informers, whose context must have ended, and waits
// for their goroutines.
func (set *informerSet) shutdown() {
	if set == nil {
		return
	}
	set.wg.Wait()
	if set.mcs != nil {
		set.mcs.Shutdown()
	}
}

// onService handles a Service added (old nil), updated or deleted (cur
// nil). A bad policy annotation is reported once per change of the
// annotations, not on every update of the service.
func (s *Source) onService(old, cur any) {
	if cur == nil {
		if svc, ok := unwrap(old).(*corev1.Service); ok {
			s.st.setService(keyOf(svc), nil)
			s.changed()
		}
		return
	}
	svc, ok := cur.(*corev1.Service)
	if !ok {
		return
	}
	key := keyOf(svc)
	conv, ok, err := serviceFrom(svc)
	if prev, _ := old.(*corev1.Service); err != nil && (prev == nil || !maps.Equal(prev.Annotations, svc.Annotations)) {
		s.log.Warn("bad service annotations: a bad policy keeps the default policy, a bad export-to exports to no one", "service", key.String(), "err", err)
		s.m.annotationErrors.Inc()
	}
	if ok {
		s.st.setService(key, &conv)
	} else {
		s.st.setService(key, nil)
	}
	s.changed()
}

// onSlice handles an EndpointSlice added (old nil), updated or deleted (cur
// nil).
func (s *Source) onSlice(old, cur any) {
	var from, to model.ServiceKey
	var conv *slice
	var name string
	if es, ok := unwrap(old).(*discoveryv1.EndpointSlice); ok {
		name = es.Name
		if key, _, ok := sliceFrom(es, s.cfg.EndpointCIDRs); ok {
			from = key
		}
	}
	if es, ok := cur.(*discoveryv1.EndpointSlice); ok {
		name = es.Name
		if key, sl, ok := sliceFrom(es, s.cfg.EndpointCIDRs); ok {
			to, conv = key, &sl
			for reason, n := range sl.skipped {
				s.m.endpointsSkipped.WithLabelValues(reason).Add(float64(n))
				s.log.Debug("endpoints skipped", "slice", es.Namespace+"/"+es.Name, "reason", reason, "count", n)
			}
		}
	}
	s.st.setSlice(name, from, to, conv)
	s.changed()
}

// onExport handles a ServiceExport of any version added, updated or
// deleted.
func (s *Source) onExport(obj any, exists bool) {
	m, ok := unwrap(obj).(metav1.Object)
	if !ok {
		return
	}
	key := model.ServiceKey{Namespace: m.GetNamespace(), Name: m.GetName()}
	var to *exportTo
	if exists {
		parsed, err := parseExportTo(m.GetAnnotations())
		if err != nil {
			s.log.Warn("bad ServiceExport annotation, the service is not exported", "service", key.String(), "err", err)
			s.m.annotationErrors.Inc()
		}
		to = &parsed
	}
	s.st.setExport(key, to)
	s.changed()
}

// unwrap returns the last known object of a deletion the informer missed.
func unwrap(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

func keyOf(svc *corev1.Service) model.ServiceKey {
	return model.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
}
