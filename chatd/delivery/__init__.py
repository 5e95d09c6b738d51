"""Where a frame for a user goes: this node's sessions (every device), another node through
the cluster, or offline storage; and which frames are still in flight.

    router.py    the online map of this node and the fan-out of one message to its users
    inbox.py     one session's mailbox: held until the login reply, in flight until acked
    devices.py   several sessions (devices) of one user on this node
    receipts.py  counting the copies of one message until every one is safe
    relay.py     copies handed to other nodes and the reports that settle them
    offline.py   the one place that stores what could not be delivered (quota, retries)
    history.py   every accepted message kept for HISTORY and SYNC, written in batches
    session.py   what delivery needs from a connection, whatever carries it
    dialect.py   what an original-dialect session gets of newer frames and fields
"""
