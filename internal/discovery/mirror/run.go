package mirror

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Synced reports whether the mirror has caught up once: its caches have
// synced, a desired set has been given, and every mirror of it has been
// reconciled successfully. It stays true afterwards. A persistent API error
// on one mirror (say, a namespace the gateway may not write to) keeps it
// false.
func (m *Mirror) Synced() bool { return m.synced.Load() }

// Run reconciles until ctx ends, then returns nil; it may be called once.
// Nothing is reconciled before the first Set, so a restarting gateway does
// not delete mirrors it has not yet been told about. Run leaves the mirrors
// in place when it returns.
func (m *Mirror) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("mirror: Run called twice")
	}
	m.mu.Lock()
	m.queue = workqueue.NewTypedRateLimitingQueue(
		workqueue.NewTypedItemExponentialFailureRateLimiter[key](10*time.Millisecond, 2*time.Minute))
	for k := range m.pending { // what Sets before Run asked for
		m.queue.Add(k)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	defer func() {
		m.queue.ShutDown() // workers drain and stop; informers stop with ctx
		wg.Wait()
	}()
	for _, inf := range []cache.SharedIndexInformer{m.namespaces, m.services, m.slices} {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	if !cache.WaitForCacheSync(ctx.Done(), m.namespaces.HasSynced, m.services.HasSynced, m.slices.HasSynced) {
		return nil
	}
	select {
	case <-m.firstSet:
	case <-ctx.Done():
		return nil
	}
	m.mu.Lock()
	m.working = true
	m.checkSettled()
	m.mu.Unlock()
	for range workers {
		wg.Go(func() {
			for m.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	return nil
}

// processNext reconciles one mirror; false once the queue shuts down.
func (m *Mirror) processNext(ctx context.Context) bool {
	k, shutdown := m.queue.Get()
	if shutdown {
		return false
	}
	defer m.queue.Done(k)
	m.mu.Lock()
	gen := m.gen
	m.mu.Unlock()
	if err := m.reconcile(ctx, k); err != nil {
		if ctx.Err() != nil {
			return true // stopping: the next Run picks it up
		}
		m.m.errors.Inc()
		m.log.Warn("mirror reconcile failed", "mirror", k.String(), "retries", m.queue.NumRequeues(k), "err", err)
		m.queue.AddRateLimited(k)
		return true
	}
	m.queue.Forget(k)
	m.mu.Lock()
	if g, ok := m.pending[k]; ok && g <= gen {
		delete(m.pending, k)
		m.checkSettled()
	}
	m.mu.Unlock()
	return true
}

// checkSettled marks the mirror synced and wakes waiters once every mirror
// named by the latest Set has been reconciled. Called with mu held.
func (m *Mirror) checkSettled() {
	if !m.working || len(m.pending) > 0 {
		return
	}
	m.synced.Store(true)
	close(m.settled)
	m.settled = make(chan struct{})
}
