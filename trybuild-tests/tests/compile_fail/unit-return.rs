use lock_runtime::distributed_lock;

#[distributed_lock(key = "order:{id}")]
async fn settle(id: u64) {
    println!("{id}");
}

fn main() {}
