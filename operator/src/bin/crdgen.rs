//! Prints the ThanosReceiver CRD as YAML (`make crds` writes it to `crds/`).

use kube::CustomResourceExt;

fn main() {
    let crd = operator::crd::ThanosReceiver::crd();
    print!(
        "{}",
        serde_yaml::to_string(&crd).expect("a CRD always serialises")
    );
}
