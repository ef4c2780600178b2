use lock_runtime::{LockError, distributed_lock};

struct Order;

impl Order {
    fn id(&self) -> u64 {
        7
    }
}

#[distributed_lock(key = "order:{order.id()}")]
async fn settle(order: &Order) -> Result<u64, LockError> {
    Ok(order.id())
}

fn main() {}
