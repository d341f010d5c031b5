package kube

import (
	"errors"
	"fmt"
	"log/slog"

	"k8s.io/client-go/discovery"
	authnv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	corev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1 "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	mcsclientset "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/ewgw/ewgw/internal/discovery/kubeclient"
)

// Client is the part of the Kubernetes API the source uses: Services and
// EndpointSlices, and for the preflight, API discovery, access reviews and
// SelfSubjectReview. A *kubeclient.Set is one (NewClients), and so is
// client-go's full clientset.
type Client interface {
	CoreV1() corev1.CoreV1Interface
	DiscoveryV1() discoveryv1.DiscoveryV1Interface
	AuthorizationV1() authzv1.AuthorizationV1Interface
	AuthenticationV1() authnv1.AuthenticationV1Interface
	Discovery() discovery.DiscoveryInterfaces
}

// RESTConfig returns the client configuration of the kubeconfig file at
// path, or, when path is empty, of the pod the gateway runs in (its
// ServiceAccount token and the cluster CA).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, errors.New("kubernetes: no kubeconfig given and not running in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT unset): give a kubeconfig path")
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes in-cluster config: %w", err)
	}
	return rc, nil
}

// NewClients returns the Kubernetes and MCS clients of rc. The Kubernetes
// client speaks protobuf, which built-in types support and custom
// resources do not.
func NewClients(rc *rest.Config) (*kubeclient.Set, mcsclientset.Interface, error) {
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "ewgw"
	}
	mcs, err := mcsclientset.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("kube: MCS client: %w", err)
	}
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	kc, err := kubeclient.New(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("kube: client: %w", err)
	}
	return kc, mcs, nil
}

// RouteKlog sends what client-go logs through klog (deprecation warnings,
// reflector errors) to logger, so the gateway writes one log format. klog
// is process-global: call it once, from main.
func RouteKlog(logger *slog.Logger) {
	klog.SetSlogLogger(logger.With("component", "client-go"))
}
