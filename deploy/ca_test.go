package deploy_test

import (
	"path"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/ewgw/ewgw/internal/certgen"
	"github.com/ewgw/ewgw/internal/config"
)

const caDir = "/var/run/ewgw/ca"

// checkCA checks a variant whose gateway issues its own SVIDs: the Secret
// ewgw-ca mounted at caDir and read as the CA, the bundles read from the
// Secret ewgw-identity as `ewgw certs` writes them, and the pod's namespace
// and service account passed for the default SPIFFE ID.
func checkCA(t *testing.T, cfg *config.Config, mounts map[string]corev1.Volume, pod *corev1.PodTemplateSpec, c *certgen.Cluster) {
	t.Helper()
	if vol := mounts[caDir]; vol.Secret == nil || vol.Secret.SecretName != certgen.SecretCA {
		t.Fatalf("%s: want the Secret %s mounted, got %+v", caDir, certgen.SecretCA, vol)
	}
	if vol := mounts[certsDir]; vol.Secret == nil || vol.Secret.SecretName != certgen.SecretIdentity {
		t.Fatalf("%s: want the Secret %s mounted, got %+v", certsDir, certgen.SecretIdentity, vol)
	}
	ca := cfg.Peering.Identity.CA
	if ca == nil {
		t.Fatal("peering.identity.ca not set")
	}
	if ca.CertChain != path.Join(caDir, certgen.FileCertChain) || ca.Key != path.Join(caDir, certgen.FileCAKey) {
		t.Errorf("identity.ca reads %s and %s, want %s's %s and %s", ca.CertChain, ca.Key, certgen.SecretCA, certgen.FileCertChain, certgen.FileCAKey)
	}
	if c == nil {
		t.Fatalf("cluster %q: not one `ewgw certs` made in this test", cfg.Cluster)
	}
	for _, td := range c.TrustDomains() {
		if want := path.Join(certsDir, certgen.BundleFile(c.TrustDomain, td)); ca.Bundles[td] != want {
			t.Errorf("identity.ca.bundles[%s] = %q, want %s", td, ca.Bundles[td], want)
		}
	}
	env := map[string]string{}
	for _, e := range pod.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAMESPACE"] != "metadata.namespace" || env["POD_SERVICE_ACCOUNT"] != "spec.serviceAccountName" {
		t.Errorf("POD_NAMESPACE and POD_SERVICE_ACCOUNT from the downward API: got %v", env)
	}
}

// checkCertManagerCSI checks the csi-driver-spiffe variant: the driver's
// volume at certsDir read as the SVID, its key and the own domain's bundle
// (tls.crt, tls.key, ca.crt), and the peers' bundles from the ConfigMap
// ewgw-bundles.
func checkCertManagerCSI(t *testing.T, cfg *config.Config, mounts map[string]corev1.Volume) {
	t.Helper()
	if vol := mounts[certsDir]; vol.CSI == nil || vol.CSI.Driver != "spiffe.csi.cert-manager.io" {
		t.Fatalf("%s: want a spiffe.csi.cert-manager.io volume, got %+v", certsDir, vol)
	}
	const bundles = "/var/run/ewgw/bundles"
	if vol := mounts[bundles]; vol.ConfigMap == nil || vol.ConfigMap.Name != "ewgw-bundles" {
		t.Fatalf("%s: want the ConfigMap ewgw-bundles, got %+v", bundles, vol)
	}
	f := cfg.Peering.Identity.Files
	if f == nil || f.CertChain != path.Join(certsDir, "tls.crt") || f.Key != path.Join(certsDir, "tls.key") {
		t.Fatalf("identity.files: want %s/tls.crt and tls.key, got %+v", certsDir, f)
	}
	for td, p := range f.Bundles {
		if p != path.Join(certsDir, "ca.crt") && path.Dir(p) != bundles {
			t.Errorf("identity.files.bundles[%s] = %s: neither the driver's ca.crt nor in ewgw-bundles", td, p)
		}
	}
}
