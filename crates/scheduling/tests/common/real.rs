//! The embedded EC2 catalog priced from the shared price file, for tests that want real
//! instance types. The price file is read in place from `$NODEWRIGHT_DATA` (default: the
//! `shared/data` directory beside the repository).

use std::path::PathBuf;
use std::sync::Arc;

use nodewright_scheduling::catalog::{Catalog, PriceTable};
use nodewright_scheduling::instance_type::InstanceType;

pub fn data_dir() -> PathBuf {
    std::env::var_os("NODEWRIGHT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

/// Every us-east-1 type of the embedded catalog, priced from `prices-us-east-1.json`.
pub fn us_east_1_types() -> Vec<Arc<InstanceType>> {
    let path = data_dir().join("prices-us-east-1.json");
    let prices = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let prices = PriceTable::from_json(&prices).expect("the shared price file parses");
    let catalog = Catalog::embedded().expect("the embedded catalog loads");
    catalog
        .instance_types("us-east-1", Some(&prices))
        .expect("us-east-1 is in the catalog")
        .into_iter()
        .map(Arc::new)
        .collect()
}
