//! Test harness: the local Kubernetes control plane and network scenarios. Built in issue 6.
