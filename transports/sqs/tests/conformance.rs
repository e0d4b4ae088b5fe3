//! The transport conformance suite on the SQS endpoint at
//! `EXACTLY_TEST_SQS_URL` (moto here), with a one-second lease.

mod common;

exactly_conformance::transport_conformance!(|_| async {
    common::queue().visibility_timeout(std::time::Duration::from_secs(1))
});

/// A message another producer sent to the queue, that is no envelope, goes
/// to the endpoint as an undecodable message (for its error queue).
#[tokio::test]
async fn foreign_bytes_are_handed_over_undecodable() {
    let queue = common::queue();
    let name = format!("{}foreign", exactly_transport_testkit::run_prefix());
    let client = queue.client().clone();
    let target = name.clone();
    exactly_transport_testkit::foreign_bytes_are_handed_over(&queue, &name, |bytes| async move {
        let url = client
            .get_queue_url()
            .queue_name(target)
            .send()
            .await
            .expect("queue url");
        client
            .send_message()
            .queue_url(url.queue_url().expect("a url"))
            .message_body(String::from_utf8(bytes).expect("text"))
            .send()
            .await
            .expect("send");
    })
    .await;
    queue.delete_queue(&name).await.expect("delete");
}
