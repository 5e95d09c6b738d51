"""Push notifications for users who are away: Web Push (VAPID, RFC 8030/8291/8292) and FCM
HTTP v1, behind a bounded queue, and the rule of when a message is pushed.

    endpoints.py  which push endpoints a subscription may name (https, public addresses)
    http.py       one POST to a checked address with Twisted's HTTP client
    vapid.py      the node's VAPID key pair (created at first start) and its JWT header
    webpush.py    an encrypted Web Push request (http_ece, aes128gcm)
    fcm.py        FCM HTTP v1 with a service account's OAuth2 token, refreshed before expiry
    queue.py      the bounded queue of pushes, its retries and its metrics
    notifier.py   when a stored or unacknowledged message is pushed, and what it says
"""
